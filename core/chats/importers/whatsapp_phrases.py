"""What WhatsApp writes in each language, for the importer in `whatsapp.py`: media and deleted
placeholders, its own notices, attachment lines, edit marks and chat titles. A new language is
a new phrase here; nothing else changes."""

from __future__ import annotations

import re

from convsim.core.chats.messages import CALL, DELETED, MEDIA, STICKER

LRM = "\u200e"

MARKER_PHRASES = {
    MEDIA: "<Media omitted>|<Multimedia omitido>|<Medien ausgeschlossen>|<Médias omis>|"
    "<Media omessi>|<Mídia oculta>|<Arquivo de mídia oculto>|<Media weggelaten>|"
    "<Media tidak disertakan>|<Medya dahil edilmedi>|<Без медиафайлов>|<Pominięto multimedia>|"
    "<Média vynechána>|<Media dihilangkan>|<Mediafiler utelatt>|<Media utelämnad>|"
    "<Medier udeladt>|image omitted|video omitted|audio omitted|GIF omitted|"
    "document omitted|Contact card omitted|imagen omitida|video omitido|audio omitido|"
    "GIF omitido|Bild weggelassen|Video weggelassen|Audio weggelassen|immagine omessa|"
    "video omesso|audio omesso|imagem ocultada|vídeo ocultado|áudio ocultado",
    STICKER: "sticker omitted|sticker omitido|Sticker weggelassen|sticker omesso|figurinha omitida",
    DELETED: "This message was deleted|You deleted this message|Se eliminó este mensaje|"
    "Eliminaste este mensaje|Diese Nachricht wurde gelöscht|Du hast diese Nachricht gelöscht|"
    "Ce message a été supprimé|Vous avez supprimé ce message|Questo messaggio è stato eliminato|"
    "Hai eliminato questo messaggio|Esta mensagem foi apagada|Você apagou esta mensagem|"
    "Mensagem apagada|"
    # A message the phone could not decrypt when the chat was exported: its text is lost.
    "Waiting for this message. This may take a while|Waiting for this message",
    CALL: "Missed voice call|Missed video call|Missed group voice call|Missed group video call|"
    "Llamada perdida|Videollamada perdida|Verpasster Sprachanruf|Verpasster Videoanruf",
}
# A whole body that is a marker -> (kind, text without the leading mark). Exact spellings are
# looked up in the hot loop; any other case (`<media omitted>`, `IMAGE OMITTED`) when classified.
MARKERS = {
    prefix + phrase + dot: (kind, phrase + dot)
    for kind, phrases in MARKER_PHRASES.items()
    for phrase in phrases.split("|")
    for prefix in ("", LRM)
    for dot in ("", ".")
}
FOLDED_MARKERS = {body.casefold(): hit for body, hit in MARKERS.items()}
# How the app's own notices start; in groups it writes some as if sent by the group itself
# (`15.04.2016, 15:04 - Group Name: Messages and calls are end-to-end encrypted...`).
NOTICES = (
    "Messages and calls are end-to-end encrypted",
    "Messages to this group are now secured with end-to-end encryption",
    "Messages to this chat and calls are now secured with end-to-end encryption",
    "Messages you send to this group are now secured with end-to-end encryption",
    "Los mensajes y las llamadas están cifrados de extremo a extremo",
    "Los mensajes en este grupo ahora están protegidos con cifrado de extremo a extremo",
    "Nachrichten und Anrufe sind Ende-zu-Ende-verschlüsselt",
    "Les messages et les appels sont chiffrés de bout en bout",
    "I messaggi e le chiamate sono crittografati end-to-end",
    "As mensagens e as chamadas são protegidas com a criptografia de ponta a ponta",
    "Berichten en oproepen worden end-to-end versleuteld",
    "Mesajlar ve aramalar uçtan uca şifrelidir",
    "Сообщения и звонки защищены сквозным шифрованием",
    "Wiadomości i połączenia są szyfrowane end-to-end",
    "Zprávy a hovory jsou koncově šifrované",
)
NOTICE_STARTS = frozenset(n[:12] for n in NOTICES)
EDITED = re.compile(
    r"[\s\u200e]*<(?:This message was edited|Se editó este mensaje|Diese Nachricht wurde "
    r"bearbeitet|Ce message a été modifié|Questo messaggio è stato modificato|Esta mensagem "
    r"foi editada|Mensagem editada)\.?>\Z"
)
IOS_FILE = re.compile(  # `<attached: 00000012-PHOTO-….jpg>`, maybe after the file's title
    r"\u200e?(?:(.*?)\s)?\u200e?<(?:attached|adjunto|Anhang|pièce jointe|allegato|anexo|"
    r"bijgevoegd|прикреплено)\s?: ([^<>\n]+)>\Z"
)
ANDROID_FILE = re.compile(  # `IMG-….jpg (file attached)`, maybe with a caption on next lines
    r"\u200e?(.+?) \((?:file attached|Datei angehängt|archivo adjunto|fichier joint|"
    r"file allegato|arquivo anexado|ficheiro anexado|bestand bijgevoegd|dosya ekli|"
    r"file terlampir)\)$",
    re.MULTILINE,
)
OMITTED = re.compile(  # iOS without media: `Trip.pdf • 3 pages document omitted`
    r"\u200e?(?:(.*?)\s\u200e?)?((?:image|video|audio|GIF|sticker|document|Contact card|"
    r"View once (?:voice message|photo|video|message)) omitted"
    r"|(?:imagen|documento|sticker) omitid[ao]|(?:Bild|Dokument|Sticker) weggelassen)\Z"
)
# iOS call records, by the person who called: `\u200eVoice call, \u200e12 min`,
# `\u200eVideo call, \u200eNo answer`.
CALL_RECORD = re.compile(
    r"\u200e?(?:Group )?(?:[Vv]oice|[Vv]ideo) call(?:, ?\u200e?[^\n]{1,40})?\Z"
)
OMITTED_ENDS = ("omitted", "omitida", "omitido", "weggelassen")
# iOS bodies that start with U+200E but are the sender's own content, not an app notice.
IOS_USER_CONTENT = (LRM + "Location:", LRM + "POLL:", LRM + "Live location")
# A would-be sender name that is really the start of a system line.
NOT_A_NAME = re.compile(r"[\"“”«»„]|changed the (?:subject|group)|changed this group|created")
TITLE = re.compile(
    r"(?i)WhatsApp[\w\s-]*?(?:\s[-\u2013]|\b(?:with|mit|con|com|avec|met|ile|s uživatelem|"
    r"с контактом))\s+(.+)$"
)
