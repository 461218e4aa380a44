"""One LLM call as the wire sees it, and the rule that makes every call count once.

A transport tap (httpx, httpx2, requests, aiohttp) asks ``begin()`` what a request belongs to:

1. an SDK-method call (the openai/anthropic plugins open it, check limits, and publish it in
   ``CURRENT_EXCHANGE`` for exactly the duration of the SDK's ``request()``),
2. else an LLM call already in flight in this context (``agentwatch.current_llm_call()``: a framework
   plugin's call or a manual ``with agentwatch.llm_call(...)``) — the tap only adds to it,
3. else, for a known provider host or a registered base URL, a call of its own (limits checked here),
4. else nothing: the request passes untouched.

Only LLM endpoints are considered (by path), so other traffic inside a call (an auth token fetch)
is never mistaken for it. A tap reports the response (``responded``) and the end of its body
(``body_ended``); the exchange applies usage, status and request id to the call and ends it if it
owns the ending.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from agentwatch.instrumentation import (
    LLMCall,
    adopt_registered,
    capturing,
    estimate_request_tokens,
    estimate_text_bytes,
    estimate_tokens,
    get_client,
    get_current_llm_call,
    logger,
    output_token_cap,
    remember_carried_tokens,
    start_llm_call,
    swallow_internal_error,
)

from ._body import BodyReader, parse_json
from ._endpoints import Endpoint, endpoint_for_path, safe_url
from ._settings import Settings, settings
from ._usage import Reading, _get_extra, read_into

__all__ = ["Exchange", "CURRENT_EXCHANGE", "BUILT_REQUEST", "get_current_exchange", "set_current_exchange",
           "reset_current_exchange", "get_built_request", "set_built_request", "begin", "settings", "Settings",
           "request_model", "request_input", "url_text", "went_out"]

#: APIs whose SDK results ``Exchange._settle_openai`` reads (OpenAI chat, legacy completions, embeddings).
_OPENAI_RESULTS = frozenset({"chat", "embeddings"})

#: The SDK-method call whose HTTP request is being made in this context (set by the SDK plugins).
CURRENT_EXCHANGE: ContextVar[Exchange | None] = ContextVar("agentwatch_http_exchange", default=None)
#: An SDK's LLM request built outside its ``request()`` wrapper, and the call opened for it then (``_sdk``), until the
#: HTTP tap sends it and takes the call over.
BUILT_REQUEST: ContextVar[tuple[Any, Exchange] | None] = ContextVar("agentwatch_built_request", default=None)
# Bound methods, as core's hot context variables (``_context``): CPython 3.11 runs ``var.get()`` through the attribute
# at ~4x the bound method's cost, and every SDK call reads and sets these several times.
get_current_exchange = CURRENT_EXCHANGE.get
set_current_exchange = CURRENT_EXCHANGE.set
reset_current_exchange = CURRENT_EXCHANGE.reset
get_built_request = BUILT_REQUEST.get
set_built_request = BUILT_REQUEST.set


class Exchange:
    """Feeds one ``LLMCall`` from HTTP responses. ``owned``: this layer opened the call (so it reports
    missing usage and ends it); otherwise it adds details and usage only where the owner gave none."""

    __slots__ = ("call", "endpoint", "owned", "ends_with_body", "reads_result", "body_open", "streamed",
                 "attempts", "unanswered", "covered", "charged", "status", "capture_text", "request_body",
                 "usage_requested", "request", "sending", "_response")

    # Not keyword-only: the SDK layer passes them by position on every call (CPython matches keywords by name).
    def __init__(self, call: LLMCall, endpoint: Endpoint, owned: bool, ends_with_body: bool,
                 reads_result: bool = False, capture_text: bool | None = None, request_body: Any = None) -> None:
        if capture_text is None:
            capture_text = capturing()
        self.capture_text = capture_text
        self.call = call
        self.endpoint = endpoint
        self.owned = owned
        #: True once nobody else will end the call: the end of the response body ends it.
        self.ends_with_body = ends_with_body
        #: An SDK hands over the object it parsed (``settle``): a body it read in full needs no reading here.
        self.reads_result = reads_result
        self.body_open = False
        #: A tap reads (or read) a response body of this exchange as it passes (a stream).
        self.streamed = False
        self.attempts = 0
        #: Attempts that went out and got no answer (a read timeout, or cut off by the program): the provider bills
        #: each one's prompt, so each is charged an estimate of it if the call ends without usage.
        self.unanswered = 0
        #: Unanswered attempts a hard budget's reservation was topped up for (``cover_unanswered``).
        self.covered = 0
        #: Unanswered attempts added to the call's charge (``charge_unanswered``).
        self.charged = 0
        self.status = 0
        #: The request's JSON body (a dict, bytes, or a function giving either), read only to estimate the
        #: usage of a call whose provider sent none.
        self.request_body = request_body
        #: AgentWatch added ``stream_options.include_usage`` to this request (``_stream_usage``).
        self.usage_requested = False
        #: The HTTP request the SDK built for this call (its last attempt's), set by the SDK layer: the tap knows
        #: it by identity. None where the SDK built it out of our sight (the tap then goes by its path).
        self.request: Any = None
        #: httpx is sending this SDK call's request (``_httpx.send``): a tap in its transport (LiteLLM's aiohttp one)
        #: sees the same request again and leaves it to httpx's, which counts the attempt and reads the body once.
        self.sending = False
        self._response: Any = None

    def responded(self, url: str, status: int, headers: Mapping[str, str]) -> None:
        """Headers of one attempt arrived (retries make several)."""
        self.attempts += 1
        self._response = None  # an earlier attempt kept by keep_response is superseded
        self._note(safe_url(url), status, _request_id(headers))

    def _note(self, url: str, status: int, request_id: str | None) -> None:
        self.status = status
        attributes = self.call.span.attributes
        attributes["http.url"] = url
        attributes["http.status_code"] = status
        if request_id:
            attributes["http.request_id"] = request_id
        if self.attempts > 1:
            attributes["http.attempts"] = self.attempts

    def reader(self, headers: Mapping[str, str], *, encoded: bool = False) -> BodyReader:
        """A reader for this response's body; ``encoded``: the tap sees bytes the client has yet to decode."""
        content_type, content_encoding = _body_headers(headers, encoded)
        return BodyReader(self.endpoint.api, content_type, self.capture_text, content_encoding)

    def whole_body(self, headers: Mapping[str, str], body: bytes) -> None:
        """A body the client read in full."""
        reader = self.reader(headers)
        reader.read_whole(body)
        self.body_ended(reader)

    def keep_response(self, response: Any) -> None:
        """An httpx response of this exchange (one attempt). Nothing is read from it now, on the way to the
        user: ``settle``, ``fail`` or the end of its streamed body record its status, URL and request id."""
        self.attempts += 1
        self._response = response

    def _record_kept(self, sdk_object: Any = None) -> Any:
        """Status, URL and request id of the kept response (the last attempt's), if any. The SDKs put the
        request id on their results and errors (``_request_id``, ``request_id``): cheaper than headers."""
        # Results carry ``_request_id``, errors ``request_id``: asking a result (a pydantic model) for a
        # name it lacks raises and catches inside pydantic, which costs more than the rest of this.
        if isinstance(sdk_object, BaseException):
            request_id = getattr(sdk_object, "request_id", None)
        else:
            request_id = getattr(sdk_object, "_request_id", None) if sdk_object is not None else None
        return self._record_response(request_id)

    def _record_response(self, request_id: Any) -> Any:
        """``_record_kept`` once the request id the SDK gave (if any) is known."""
        response, self._response = self._response, None
        if response is not None:
            if request_id.__class__ is not str:
                request_id = _request_id(response.headers)
            # self._note(...), inlined: this is on every SDK call's path.
            self.status = status = response.status_code
            attributes = self.call.span.attributes
            url = response.request.url
            text = _url_texts.get(getattr(url, "_uri_reference", None))  # url_text(url), seen before, without its call
            attributes["http.url"] = text if text is not None else url_text(url)
            attributes["http.status_code"] = status
            if request_id:
                attributes["http.request_id"] = request_id
            if self.attempts > 1:
                attributes["http.attempts"] = self.attempts
        return response

    def returned(self, result: Any) -> None:
        """The SDK's ``request()`` returned ``result``: settle a call read in full; a streamed call of ours ends with
        its body. Never raises (an internal error is logged)."""
        try:
            if self.streamed:
                if self.owned:
                    if self.body_open:
                        self.ends_with_body = True
                    else:
                        self.end()
            elif not (self.owned and not self.capture_text and self.endpoint.api in _OPENAI_RESULTS
                      and self._settle_openai(result)):
                self.settle(result)
        except Exception:
            swallow_internal_error("the SDK layer")

    def settle(self, result: Any) -> None:
        """The SDK returned ``result`` for a body read in full: read it and the kept response; end the call
        if this layer owns it (a framework's call only gets what its owner did not give). ``returned`` reads the
        usual openai result itself (``_settle_openai``) and comes here for any other."""
        reading = Reading(self.endpoint.api, self.capture_text)
        read_into(reading, result)
        unreadable = None
        response = self._record_kept(result)
        if reading.input_tokens is None and reading.output_tokens is None:  # not reading.has_usage
            if response is not None:  # e.g. with_raw_response: nothing parsed to read
                reader = self.reader(response.headers)
                reading = reader.read_whole(response.content)
                unreadable = reader.unreadable
            elif self.owned:  # an HTTP client no tap sees, and no usage
                self.call.span.attributes["usage_missing"] = True
                if not self.status:
                    self.status = 200  # the SDK returned a result: a success, to be estimated
        self._apply(reading, unreadable, result=result)
        if self.owned:
            call = self.call
            if not call.ended:  # self.end(), inlined
                call.end(error=f"HTTP {self.status}" if self.status >= 400 else None)

    def _settle_openai(self, result: Any) -> bool:
        """``settle`` for the usual openai SDK result (``ChatCompletion``, ``Completion``,
        ``CreateEmbeddingResponse``) of a call this layer owns: the fields ``_openai_chat`` and ``_apply``
        would read and set, read from the model and set on the call directly. False (nothing done) for
        any other shape, which the general path then reads."""
        fields = getattr(result, "__dict__", None)
        if not fields:
            return False
        usage = fields.get("usage")
        counts = getattr(usage, "__dict__", None) if usage is not None else None
        if not counts:
            return False
        prompt = counts.get("prompt_tokens")
        completion = counts.get("completion_tokens")
        if prompt is None and completion is None:
            return False
        if completion is None and self.endpoint.api == "embeddings":
            completion = 0
        details = counts.get("prompt_tokens_details")
        details = getattr(details, "__dict__", None) if details is not None else None
        if details:
            cached = details.get("cached_tokens")
            cache_write = details.get("cache_write_tokens")
        else:
            cached = cache_write = None
        if cached is None:
            cached = _get_extra(usage, "prompt_cache_hit_tokens")  # DeepSeek
        self._record_response(fields.get("_request_id"))
        call = self.call
        span = call.span
        call.set_usage(prompt, completion, cached, cache_write)
        attributes = span.attributes
        model = fields.get("model")
        if model:
            _answered_by(call, model)
        choices = fields.get("choices")
        if choices.__class__ is list and choices:
            choice = choices[0]
            # A declared field of the SDK's model: read as an attribute (a missing one would raise and catch).
            finish_reason = choice.get("finish_reason") if choice.__class__ is dict else \
                getattr(choice, "finish_reason", None)
            if finish_reason and "finish_reason" not in attributes:
                attributes["finish_reason"] = finish_reason
        if not call.ended:
            status = self.status
            call.end(f"HTTP {status}" if status >= 400 else None)
        return True

    def unanswered_attempt(self, error: BaseException) -> None:
        """An attempt's request raised before any response (a tap saw it). One that went out (``went_out``) is
        counted: the provider bills its prompt, though the caller gets no answer."""
        if went_out(error):
            self.attempts += 1
            self.unanswered += 1

    def cover_unanswered(self, body: Any) -> None:
        """Before a retry: under a hard budget, reserve the prompt (``body``'s input bound) of each attempt that went
        unanswered since the last retry, as each is charged if the call ends without usage; the call's first
        reservation covers one request. May raise ``CircuitBreakerException``: the retry is then not sent."""
        missing = self.unanswered - self.covered
        self.covered = self.unanswered
        for _ in range(missing):
            self.call.reserve_request(body, kind="embedding")  # an embedding's worst case: input only

    def fail(self, error: BaseException) -> None:
        """The SDK raised (an error status after its retries, a timeout, the program's cancellation): end the call with
        that error, charging the attempts that went out unanswered. A framework's call (not ``owned``) is charged
        too (an Agents SDK guardrail's tripwire cancelling a model call), and its owner ends it."""
        self._record_kept(error)
        unanswered = self.unanswered
        if not unanswered and not self.status and not isinstance(error, Exception):
            unanswered = 1  # cut off by the program, no tap of ours saw the attempt (an HTTP client not patched)
        if unanswered:
            self.charge_unanswered(unanswered)
        if self.owned:
            self.end(error)

    def charge_unanswered(self, requests: int) -> None:
        """Charge the call for this exchange's ``requests`` requests (so far) that went out and got no answer (a read
        timeout, the program's cancellation: ``asyncio.wait_for``, a task cancelled, Ctrl-C), from an estimate of
        this one's prompt: a retry loop around a slow provider is not free. They add to those of the call's other
        exchanges (a framework's retries: ``LLMCall.add_unanswered``); charged only if the call ends unanswered."""
        added = requests - self.charged
        if added <= 0:
            return
        self.charged = requests
        attempts = max(self.attempts, self.call.add_unanswered(added, self._prompt_tokens() * added))
        if attempts > 1:
            self.call.span.attributes["http.attempts"] = attempts

    def body_ended(self, reader: BodyReader | None, error: BaseException | None = None, *,
                   complete: bool = True) -> None:
        """The response body ended (read, cut, closed early or abandoned): apply it, end the call if ours."""
        self.body_open = False
        if self._response is not None:
            self._record_kept()
        if reader is not None:
            reading = reader.finish()
            # The streamed text's size serves an estimate: usage missing, or an Anthropic stream cut short.
            # Measured (the kept blocks, a regex each) only then.
            measure = reading.input_tokens is None and reading.output_tokens is None or \
                reading.api == "messages" and reading.finish_reason is None
            self._apply(reading, reader.unreadable, reader.text_bytes if measure else 0)
        if not complete and not (reader is not None and reader.ended):
            self.call.span.attributes["stream_incomplete"] = True
        if self.ends_with_body:
            self.end(error)

    def _apply(self, reading: Reading, unreadable: str | None, text_bytes: int = 0, result: Any = None) -> None:
        call = self.call
        span = call.span
        attributes = span.attributes
        if reading.input_tokens is not None or reading.output_tokens is not None:  # reading.has_usage
            if text_bytes and reading.api == "messages" and reading.finish_reason is None:
                _cut_anthropic_output(reading, text_bytes, attributes)
            # A framework's own usage wins: it was given by the layer that owns the call.
            if self.owned or not (span.input_tokens or span.output_tokens):
                if reading.api == "messages":
                    call.set_usage(**reading.usage())
                else:  # reading.usage() without building the keyword dict
                    call.set_usage(reading.input_tokens, reading.output_tokens, reading.cached_tokens,
                                   reading.cache_write_tokens)
            if reading.web_searches is not None:  # billed per search, on top of the tokens
                call.set_billable("web_search_requests", reading.web_searches)
            if reading.response_id is not None:  # a later call continuing this answer is billed it as input
                carried = (reading.input_tokens or 0) + (reading.output_tokens or 0)
                if carried.__class__ is int:
                    remember_carried_tokens(reading.response_id, reading.conversation_id, carried)
        elif 200 <= self.status < 300:
            if self.owned:
                attributes["usage_missing"] = True  # replaced by usage_estimated if the estimate applies
                if unreadable:
                    attributes["usage_unreadable"] = unreadable
            self._estimate(reading, text_bytes, result)
        model = reading.model
        if model:
            _answered_by(call, model)
        if reading.finish_reason and "finish_reason" not in attributes:
            attributes["finish_reason"] = reading.finish_reason
        if reading.texts or reading.tool_calls:
            output = reading.output()
            if output is not None and (self.owned or span.output is None):
                call.set_output(output)

    def _request(self) -> Any:
        """The request's JSON body, read now."""
        body = self.request_body
        if callable(body):
            body = body()
        if isinstance(body, (bytes, bytearray, str)):
            body = parse_json(body)
        return body

    def _prompt_tokens(self) -> int:
        """An estimate of the request's input tokens; 0 if it could not be made (logged)."""
        try:
            return estimate_request_tokens(self._request())
        except Exception:  # an estimate is a best effort: without one the call is flagged usage_missing
            logger.exception("agentwatch: could not estimate a call's usage (ignored)")
            return 0

    def _estimate(self, reading: Reading, text_bytes: int, result: Any) -> None:
        """No usage came: charge an estimate from the request and the output (``LLMCall.estimate_usage``; the layer
        owning the call may still report real usage before it ends)."""
        try:
            body = self._request()
            input_tokens = estimate_request_tokens(body)
            if text_bytes:
                output_tokens = estimate_text_bytes(text_bytes)
            elif reading.texts:
                output_tokens = estimate_tokens(reading.text or "")
            elif result is not None:  # a result read in full: its text, read only now
                full = Reading(reading.api, capture_text=True)
                read_into(full, result)
                output_tokens = estimate_tokens(full.text or "")
            else:
                output_tokens = 0
            if output_tokens:  # never past what the request allowed (a hard budget reserved that much)
                output_tokens = min(output_tokens, output_token_cap(body, self.call.span.model))
        except Exception:  # an estimate is a best effort: without one the call is flagged usage_missing
            logger.exception("agentwatch: could not estimate a call's usage (ignored)")
            return
        if input_tokens or output_tokens:
            self.call.estimate_usage(input_tokens, output_tokens)

    def mark_first_chunk(self, at_unix_nano: int | None = None) -> None:
        self.call.mark_first_token(at_unix_nano)

    def end(self, error: BaseException | str | None = None) -> None:
        call = self.call
        if call.ended:
            return
        if error is None and self.status >= 400:
            error = f"HTTP {self.status}"
        call.end(error=error)


#: Errors of an HTTP client raised once the request was sent, while waiting for the answer (httpx/httpx2 and requests:
#: ``ReadTimeout``; aiohttp: ``SocketTimeoutError``), by class name: the taps import no client they do not patch.
#: Not a connect, write or pool timeout: nothing (or not all) was sent, and nothing is billed.
_UNANSWERED_ERRORS = frozenset({"ReadTimeout", "SocketTimeoutError"})


def went_out(error: BaseException) -> bool:
    """Whether a request that raised ``error`` before any response had gone out (and its prompt is billed): a read
    timeout, or the program cutting the request off (not an ``Exception``: a cancelled task, Ctrl-C), which counts
    even while connecting, as the moment is not known."""
    if not isinstance(error, Exception):
        return True
    return any(cls.__name__ in _UNANSWERED_ERRORS for cls in type(error).__mro__)


def _cut_anthropic_output(reading: Reading, text_bytes: int, attributes: dict[str, Any]) -> None:
    """An Anthropic stream cut before ``message_delta``: ``message_start`` gave the input and an output of 1
    so far; the output streamed since is estimated from its text."""
    output = estimate_text_bytes(text_bytes)
    sent = reading.output_tokens if isinstance(reading.output_tokens, int) else 0
    if output > sent:
        reading.output_tokens = output
        attributes["usage_estimated"] = attributes["cost_estimated"] = True


#: ``http.url`` per request URL. An httpx URL keeps its parsed form (a named tuple of strings), which is
#: hashable and cheaper to look up than turning the URL into a string and stripping credentials again.
_url_texts: dict[Any, str] = {}
_URL_TEXTS_MAX = 1024


def url_text(url: Any) -> str:
    """``safe_url(str(url))``, remembered for the URLs a process calls again and again."""
    key = getattr(url, "_uri_reference", None)
    if key is None:
        return safe_url(str(url))
    text = _url_texts.get(key)
    if text is None:
        text = safe_url(str(url))
        if len(_url_texts) >= _URL_TEXTS_MAX:
            _url_texts.clear()
        _url_texts[key] = text
    return text


_REQUEST_ID_KEYS = (b"x-request-id", b"request-id")  # OpenAI and most; Anthropic


def _request_id(headers: Mapping[str, str]) -> str | None:
    """The provider's request id: ``x-request-id``, else ``request-id``. From an httpx ``Headers``, read in
    one pass over the (raw key, lowercase key, value) triples it keeps, not ``get()`` twice (each lowercases
    and encodes the key and builds a list of matches: a few microseconds per stream)."""
    items = getattr(headers, "_list", None)
    if items.__class__ is list:
        try:
            found = None
            for _, key, value in items:
                if value and key in _REQUEST_ID_KEYS:
                    if key == b"x-request-id":
                        return str(value.decode("latin-1"))
                    if found is None:
                        found = value
            return str(found.decode("latin-1")) if found is not None else None
        except (TypeError, ValueError, AttributeError):
            pass  # not the layout this expects: ask the mapping
    return headers.get("x-request-id") or headers.get("request-id")


_BODY_HEADER_KEYS = (b"content-type", b"content-encoding")


def _body_headers(headers: Mapping[str, str], encoded: bool) -> tuple[str | None, str | None]:
    """``headers.get("content-type")``, and ``headers.get("content-encoding")`` if ``encoded`` (else None). From an
    httpx ``Headers``, read in one pass over its (raw key, lowercase key, value) triples, as ``_request_id`` does: each
    ``get()`` lowercases and encodes its key, works out the headers' encoding and builds a list of matches (12k
    instructions per stream). A header given twice, or not in ASCII (which ``get()`` decodes by the headers'
    encoding), is left to ``get()``."""
    items = getattr(headers, "_list", None)
    if items.__class__ is list:
        try:
            found: list[bytes | None] = [None, None]
            for _, key, value in items:
                if key in _BODY_HEADER_KEYS:
                    at = 0 if key == b"content-type" else 1
                    if found[at] is not None or not value.isascii():
                        break  # joined, or decoded otherwise, by get()
                    found[at] = value
            else:
                content_type, content_encoding = found
                return (content_type.decode("ascii") if content_type is not None else None,
                        content_encoding.decode("ascii") if content_encoding is not None and encoded else None)
        except (TypeError, ValueError, AttributeError):
            pass  # not the layout this expects: ask the mapping
    return headers.get("content-type"), headers.get("content-encoding") if encoded else None


def _answered_by(call: LLMCall, model: Any) -> None:
    """The model the response names: the call's model if the request named none, and ``response_model`` in any case,
    also when it is the name asked for (Gemini's ``modelVersion`` usually is): only a model that answered is one, and
    the OTLP export's ``gen_ai.response.model`` was missing for every call whose answer repeated the request's name."""
    if not call.span.model:
        call.set_model(model)
    call.span.attributes["response_model"] = model


def request_model(endpoint: Endpoint, path: str, body: Any) -> str | None:
    if endpoint.api == "gemini":
        name = path.rsplit("/models/", 1)[-1]
        return name.split(":", 1)[0] or None
    model = body.get("model") if isinstance(body, dict) else None
    return str(model) if model else None


def request_input(body: Any) -> Any:
    """The prompt of a request body, to capture (asked only when text is captured): its messages (with Anthropic's
    ``system`` first, as a system message, as OpenAI's requests carry it), input, contents or prompt, JSON-like."""
    if not isinstance(body, dict):
        return None
    for key in ("messages", "input", "contents", "prompt"):
        if key in body and not _not_given(body[key]):
            value = _json_like(body[key])
            if key == "messages" and isinstance(value, list):
                system = body.get("system")  # Anthropic's system prompt is beside the messages, not among them
                if system is not None and not _not_given(system):
                    value.insert(0, {"role": "system", "content": _json_like(system)})
            return value
    return None


#: The openai and anthropic SDKs' markers of an argument not given, which their request options hold until the body
#: is sent (the SDK leaves those keys out of it).
_NOT_GIVEN_CLASSES = frozenset({"NotGiven", "Omit"})


def _not_given(value: Any) -> bool:
    return value.__class__.__name__ in _NOT_GIVEN_CLASSES and not value


def _json_like(value: Any, depth: int = 0) -> Any:
    """``value`` with SDK objects (an Anthropic reply's content blocks passed back in the next request) as the JSON
    the SDK sends for them, not their ``repr``; a copy, so a later change to the user's list does not show. Keys the
    SDK's not-given marker holds are left out, as the SDK leaves them out of what it sends."""
    if value is None or value.__class__ in (str, int, float, bool) or depth > 32:
        return value
    if isinstance(value, dict):
        return {key: _json_like(item, depth + 1) for key, item in value.items() if not _not_given(item)}
    if isinstance(value, list | tuple):
        return [_json_like(item, depth + 1) for item in value]
    dump = getattr(value, "model_dump", None)  # pydantic, as both SDKs' models are
    if callable(dump):
        try:
            return _json_like(dump(mode="json", exclude_unset=True), depth + 1)
        except Exception:  # not pydantic's after all: kept as it is (the exporter writes its str)
            return value
    return value


def begin(path: str, where: Callable[[], tuple[str, str, int | None]],
          request_body: Callable[[], Any]) -> tuple[Exchange | None, bool]:
    """What this request belongs to; ``(exchange, opened)``. ``opened``: a call this tap started (it must
    be activated while the request is sent). May raise ``CircuitBreakerException`` for case 3.

    ``where()`` gives (url, host, port) and ``request_body()`` the body: both are asked for only when a
    call of the tap's own is considered, so adding to a call in flight stays cheap."""
    endpoint = endpoint_for_path(path)
    if endpoint is None:
        return None, False
    exchange = get_current_exchange()
    if exchange is not None and not exchange.call.ended:
        return exchange, False
    in_flight = get_current_llm_call()
    if in_flight is not None and not in_flight.ended:
        if settings.providers.has_registered:
            adopt_registered(in_flight, where()[0], settings.providers)
        if in_flight.monitors_when_sent is not None:  # a local model's call sending a request after all: checked now
            in_flight.before_sending(settings.providers.provider_for(*where()))
        if in_flight.hard_budget:  # its worst case is reserved before sending (the body is read only then)
            body = request_body()
            in_flight.reserve_request(parse_json(body) if isinstance(body, (bytes, bytearray, str)) else body)
        added = Exchange(in_flight, endpoint, owned=False, ends_with_body=False)
        added.request_body = request_body  # read only if an estimate is needed
        return added, False
    client = get_client()
    if not settings.capture_hosts or client is None:
        return None, False
    url, host, port = where()
    provider = settings.providers.provider_for(url, host, port)
    if provider is None:
        return None, False
    body = request_body()
    if isinstance(body, (bytes, bytearray, str)):
        body = parse_json(body)
    model = request_model(endpoint, path, body)
    call = start_llm_call(f"{provider}.{endpoint.name}", model=model, provider=provider, kind=endpoint.kind,
                          input=request_input(body) if capturing(client) else None, request_body=body)
    exchange = Exchange(call, endpoint, owned=True, ends_with_body=True)
    exchange.request_body = body
    return exchange, True
