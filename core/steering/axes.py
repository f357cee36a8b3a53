"""The built-in steering axes: for each, short reply pairs that say the same thing and differ
only in the trait (a swapped word or two where the trait allows it), written the way people
text. Each pair is (positive pole, negative pole); a vector's slider at +1 moves towards the
first. Contrast pairs put these replies after real chat contexts (`pairs.contrast_pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Axis:
    name: str  # the vector's name: what `--steer NAME=VALUE` and `--axis NAME` use
    positive: str  # what +1 means, in a word
    negative: str  # what -1 means
    replies: tuple[tuple[str, str], ...]  # (positive, negative) replies
    length: bool = False  # the trait is how long a message runs (`fit` fits when it ends)


HAPPY = Axis(
    "happy",
    "happy",
    "sad",
    (
        ("i'm so happy about it", "i'm so sad about it"),
        ("that's great news!", "that's terrible news."),
        ("best day ever haha", "worst day ever ugh"),
        ("i love it so much", "i hate it so much"),
        ("yay that's amazing", "ugh that's awful"),
        ("feeling really good today :)", "feeling really low today :("),
        ("haha that made me smile", "honestly that made me cry"),
        ("this is wonderful", "this is miserable"),
        ("so excited for it!!", "so dreading it.."),
        ("yes!! finally good news", "no.. more bad news"),
        ("i'm having so much fun", "i'm having such a bad time"),
        ("everything is going great", "everything is going wrong"),
        ("aw that's lovely", "aw that's heartbreaking"),
        ("can't stop smiling", "can't stop crying"),
        ("what a perfect evening", "what a horrible evening"),
        ("life is good right now", "life is hard right now"),
    ),
)

WARM = Axis(
    "warm",
    "warm",
    "cold",
    (
        ("aw i miss you, hope you're ok ❤️", "fine. whatever works."),
        ("of course! happy to help you", "i guess. if i have to"),
        ("thank you so much, you're the best", "ok. noted."),
        ("love you, take care of yourself", "bye."),
        ("that's so sweet of you", "that's not my problem"),
        ("i'm always here for you", "not my business"),
        ("aww come here, big hug", "don't be dramatic"),
        ("so glad you told me", "why are you telling me"),
        ("you did so well, proud of you", "it was fine i suppose"),
        ("can't wait to see you!!", "if i have time."),
        ("sending you so much love", "ok then."),
        ("you're honestly amazing", "you're being annoying"),
        ("no worries at all, take your time", "hurry up."),
        ("thinking of you today", "i don't care tbh"),
        ("i'd love that, thank you", "no thanks."),
        ("hope your day gets better ❤️", "deal with it."),
    ),
)

FORMAL = Axis(
    "formal",
    "formal",
    "casual",
    (
        ("Yes, I would be delighted to attend.", "ya id love to come lol"),
        ("Thank you very much for letting me know.", "thx for the heads up"),
        ("I am afraid I cannot make it tomorrow.", "cant make it tmrw sorry"),
        ("Certainly. I shall see you at seven.", "sure see u at 7"),
        ("That is a very good point.", "omg true"),
        ("I do not know yet, I will inform you.", "idk yet ill lyk"),
        ("Good morning. How are you today?", "heyy hows it going"),
        ("I apologise for the delay in my reply.", "sry just saw this haha"),
        ("Please could you send me the address?", "send me the addy?"),
        ("That sounds excellent, thank you.", "sounds sick ty"),
        ("I am extremely tired this evening.", "im sooo tired rn"),
        ("Indeed, I agree with you entirely.", "yeah fr same"),
        ("Kind regards, and speak soon.", "ttyl xx"),
        ("I am on my way now.", "omw"),
        ("That is rather amusing.", "lmaooo"),
        ("I beg your pardon, what did you mean?", "wdym??"),
    ),
)

BRIEF = Axis(
    "brief",
    "brief",
    "verbose",
    (
        ("ok", "ok so honestly i have been thinking about it a lot and i think it could work"),
        ("sure", "sure, i mean it depends on a few things but i would be happy to go with it"),
        ("yes", "yes, definitely, and also i wanted to tell you about what happened earlier"),
        ("no", "no, because the thing is that i already promised i would do something else"),
        ("maybe", "maybe, it really depends on how the week goes and whether work calms down"),
        ("lol", "lol that is so funny, it reminds me of the time we got lost on the way home"),
        ("fine", "fine, but only if we leave early and stop on the way for food and coffee"),
        ("thanks", "thanks so much, honestly you did not have to and it means a lot to me"),
        ("nice", "nice, that sounds really good and i think you made the right call there"),
        ("same", "same here, i have been feeling exactly like that for the past few days too"),
        ("k", "okay, that works for me, let me know the time and i will sort out the rest"),
        ("true", "true, and to be fair i said the same thing last time but nobody listened"),
        ("agreed", "agreed, and we should probably tell the others before they make plans"),
        ("tomorrow", "tomorrow probably, unless something comes up at work in the morning"),
        ("haha", "haha oh my god, that is the best thing i have heard all week, tell me more"),
        ("done", "done, i sent it over a minute ago so check your messages and tell me"),
    ),
    length=True,
)

EXCITED = Axis(
    "excited",
    "excited",
    "calm",
    (
        ("OMG YES!!! can't wait!!!", "yes. sounds good."),
        ("no way!!! that's insane!!", "oh, that's interesting."),
        ("AHHH i'm so hyped!!!", "i'm looking forward to it."),
        ("wait WHAT?! tell me everything!!", "oh really? tell me when you can."),
        ("let's GOOO!!!", "let's do it."),
        ("this is HUGE!!!", "this is good."),
        ("i literally screamed!!!", "i was pleased."),
        ("yesss finally!!!", "good, finally."),
        ("omg omg omg!!", "ok, nice."),
        ("best news EVER!!!", "good news."),
        ("i can't breathe i'm so excited!!", "i'm quite happy about it."),
        ("WOW!!! amazing!!!", "nice, well done."),
        ("hurry up i can't wait!!!", "no rush, whenever."),
        ("stop it!!! no way!!!", "hm, fair enough."),
        ("YES YES YES!!!", "yes, alright."),
        ("that's SO cool!!!", "that's cool."),
    ),
)

BUILT_IN: dict[str, Axis] = {a.name: a for a in (HAPPY, WARM, FORMAL, BRIEF, EXCITED)}
