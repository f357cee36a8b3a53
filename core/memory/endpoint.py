"""Extraction through an OpenAI-compatible server (a llama.cpp server, Ollama, LM Studio, a cloud
API), and the server's API key in the system keyring.

Contract:
- Only `EndpointExtractor.extract` opens a network connection, and only to the URL it was
  given: nothing here runs unless the user configured an endpoint (`urllib` is imported when
  a request is made).
- `POST {url}/chat/completions` asks for JSON matching `extract.fact_schema` through
  `response_format` (json_schema; when the server refuses that, json_object, remembered for
  the rest of the job). An answer that is not that JSON raises `UnparsedAnswer` (the job skips
  the window); a server that cannot be reached, does not answer in `timeout` seconds, refuses
  the key or fails raises `EndpointError`, a one-line message naming the URL, with `kind`
  ("config", "unreachable", "timeout", "auth", "http") so the interface can say what to do next.
- The key lives only in the system keyring (service "convsim", user "memory-endpoint"): never
  in a file, the store or an error message. No usable keyring raises `KeyringUnavailable`.
- The URL and model name are settings in the store (`SETTING_URL`, `SETTING_MODEL`).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from typing import Any

from convsim.core.memory.extract import (
    INSTRUCTION,
    ExtractError,
    UnparsedAnswer,
    fact_schema,
    parse_answer,
    render_window,
)
from convsim.core.memory.gate import Candidate
from convsim.core.memory.index import Row
from convsim.core.store import Store

KEYRING_SERVICE = "convsim"
KEYRING_USER = "memory-endpoint"
SETTING_URL = "memory.endpoint.url"
SETTING_MODEL = "memory.endpoint.model"
TIMEOUT_S = 120.0
MAX_ANSWER_TOKENS = 1024
NO_KEYRING = (
    "no system keyring found: install or unlock one (GNOME Keyring, KWallet, macOS Keychain,"
    " Windows Credential Manager), or use a local endpoint that needs no key"
)


class EndpointError(ExtractError):
    """The endpoint cannot serve extraction; `kind` is "config" (none set), "unreachable",
    "timeout", "auth" (key missing or refused) or "http" (any other error status)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class KeyringUnavailable(RuntimeError):
    """No system keyring can hold the endpoint's key (the message says what to do)."""


# -- the key ------------------------------------------------------------------------------------


def _keyring_call(action: str, *args: str) -> Any:
    import keyring
    import keyring.errors

    try:
        return getattr(keyring, action)(KEYRING_SERVICE, KEYRING_USER, *args)
    except keyring.errors.PasswordDeleteError:
        return False
    except keyring.errors.NoKeyringError as exc:
        raise KeyringUnavailable(NO_KEYRING) from exc
    except (keyring.errors.KeyringError, RuntimeError) as exc:  # locked, refused, broken
        raise KeyringUnavailable(f"the system keyring failed ({exc}); {NO_KEYRING}") from exc


def get_key() -> str | None:
    """The endpoint's API key, or None when none is set."""
    key = _keyring_call("get_password")
    return key or None


def set_key(key: str) -> None:
    """Keep the key in the system keyring, checked by reading it back (a backend that drops
    it silently, like keyring's null backend, raises `KeyringUnavailable`)."""
    key = key.strip()
    if not key:
        raise ValueError("the API key is empty")
    _keyring_call("set_password", key)
    if get_key() != key:
        raise KeyringUnavailable(f"the system keyring did not keep the key; {NO_KEYRING}")


def clear_key() -> bool:
    """Remove the key; False when there was none."""
    if get_key() is None:
        return False
    _keyring_call("delete_password")
    return True


# -- settings -------------------------------------------------------------------------------------


def endpoint_settings(store: Store) -> tuple[str, str] | None:
    """(url, model) of the configured endpoint, or None."""
    url, model = store.setting(SETTING_URL), store.setting(SETTING_MODEL)
    return (url, model or "") if url else None


def save_endpoint(store: Store, url: str, model: str) -> None:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{url!r} is not an http(s) URL (for example http://localhost:8080/v1)")
    with store.transaction():
        store.set_setting(SETTING_URL, url)
        store.set_setting(SETTING_MODEL, model.strip())


# -- the extractor ----------------------------------------------------------------------------


class EndpointExtractor:
    """Extraction by a model behind an OpenAI-compatible chat completions API. `url` is the
    API root (http://localhost:8080/v1); `key` is sent as a bearer token when given."""

    name = "endpoint"

    def __init__(
        self, url: str, model: str, key: str | None = None, timeout: float = TIMEOUT_S
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self._key = key
        self.timeout = timeout
        self.schema_refused = False  # the server said no to json_schema: json_object instead

    def __repr__(self) -> str:  # never the key
        return f"EndpointExtractor({self.url!r}, {self.model!r})"

    @classmethod
    def from_settings(cls, store: Store, timeout: float = TIMEOUT_S) -> EndpointExtractor:
        """The configured endpoint, with the keyring's key when there is one (a missing
        keyring means no key: a local server needs none)."""
        found = endpoint_settings(store)
        if found is None:
            raise EndpointError("no memory endpoint is configured", "config")
        try:
            key = get_key()
        except KeyringUnavailable:
            key = None
        return cls(found[0], found[1], key, timeout)

    def extract(self, window: Sequence[Row], people: Sequence[str]) -> list[Candidate]:
        schema = fact_schema(people, [r.id for r in window], pattern=False)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": INSTRUCTION},
                {"role": "user", "content": render_window(window)},
            ],
            "temperature": 0,
            "max_tokens": MAX_ANSWER_TOKENS,
        }
        strict = {"type": "json_schema",
                  "json_schema": {"name": "facts", "schema": schema, "strict": True}}  # fmt: skip
        if not self.schema_refused:
            try:
                return self._answer(self._post({**body, "response_format": strict}))
            except EndpointError as exc:
                if exc.kind != "refused":
                    raise
                self.schema_refused = True
        return self._answer(self._post({**body, "response_format": {"type": "json_object"}}))

    def _answer(self, reply: bytes) -> list[Candidate]:
        text = reply.decode("utf-8", errors="replace")
        try:
            content = json.loads(text)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise UnparsedAnswer("not a chat completion", text) from None
        if not isinstance(content, str):
            raise UnparsedAnswer("no text in the answer", text)
        return parse_answer(_unfenced(content))

    def _post(self, body: dict[str, Any]) -> bytes:
        import urllib.error
        import urllib.request

        target = f"{self.url}/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(
            target, json.dumps(body).encode("utf-8"), headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            raise self._http_error(target, exc.code, exc.read()[:300]) from None
        except TimeoutError as exc:  # socket.timeout too
            raise self._timeout(target) from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise self._timeout(target) from exc
            why = (
                "host not found"
                if isinstance(exc.reason, socket.gaierror)
                else "connection refused"
                if isinstance(exc.reason, ConnectionRefusedError)
                else str(exc.reason)
            )
            raise EndpointError(
                f"cannot reach the memory endpoint at {self.url} ({why}): check that the"
                " server is running and the URL is right",
                "unreachable",
            ) from exc
        except OSError as exc:  # reset or closed mid-answer
            raise EndpointError(
                f"the memory endpoint at {self.url} dropped the connection ({exc})", "unreachable"
            ) from exc

    def _timeout(self, target: str) -> EndpointError:
        return EndpointError(
            f"the memory endpoint at {target} did not answer within {self.timeout:g} s:"
            " is the server overloaded, or the model still loading?",
            "timeout",
        )

    def _http_error(self, target: str, code: int, body: bytes) -> EndpointError:
        said = " ".join(body.decode("utf-8", errors="replace").split())[:200]
        if code in (401, 403):
            state = "was refused" if self._key else "is missing"
            return EndpointError(
                f"the memory endpoint at {self.url} refused the request (HTTP {code}):"
                f" its API key {state}",
                "auth",
            )
        if code in (400, 422) and not self.schema_refused:
            return EndpointError(said, "refused")  # caught by `extract`: try json_object
        return EndpointError(
            f"the memory endpoint at {target} answered HTTP {code}"
            + (f": {said}" if said else "")
            + (" (the URL should end with the API root, like /v1)" if code == 404 else ""),
            "http",
        )


def _unfenced(content: str) -> str:
    """The JSON inside a ```json fence, which some servers wrap around json_object answers."""
    text = content.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[-1].rsplit("```", 1)[0]
    return text
