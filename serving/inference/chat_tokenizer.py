"""A tokenizer folder read with ``tokenizers`` and ``jinja2`` alone: ids, chat template, decoded text.

The serving replicas need only what transformers' fast tokenizer does with a saved folder (tokenizer.json,
tokenizer_config.json, chat_template.jinja, generation_config.json), and importing transformers' pieces
costs about 80 MB resident per replica (measured against two AutoTokenizer instances). This class gives the same token ids, template text and decoded
text as ``AutoTokenizer`` (transformers 5: ``TokenizersBackend``) for the calls the engines make.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, Tokenizer

from .errors import TokenizerUnavailable

# transformers' named special tokens (SPECIAL_TOKENS_ATTRIBUTES): the template sees the ones that are set.
NAMED_SPECIAL_TOKENS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
CHAT_TEMPLATE_FILE = "chat_template.jinja"
_ADDED_TOKEN_OPTIONS = ("single_word", "lstrip", "rstrip", "normalized", "special")
# Older folders: the special tokens in a file of their own, read when the config has no added_tokens_decoder.
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"


class ChatTokenizer:
    """The tokenizer of one folder. One instance may encode and decode from several threads at once: it never
    changes its Rust tokenizer after loading (tested), unlike transformers' wrapper, whose per-call truncation
    and padding settings made concurrent use fail with "Already borrowed"."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        config: Mapping[str, Any],
        chat_template: str,
        generation_eos: Sequence[int] = (),
    ) -> None:
        self._tokenizer = tokenizer
        # The named special tokens that are set: the chat template sees them under these names.
        self._special: dict[str, str] = {}
        for name in NAMED_SPECIAL_TOKENS:
            content = _token_content(config.get(name))
            if content is not None:
                self._special[name] = content
        _add_missing_tokens(tokenizer, config, self._special)
        # transformers' split_special_tokens: special tokens written in the text encode as plain text.
        tokenizer.encode_special_tokens = bool(config.get("split_special_tokens", False))
        self.unk_token_id: int | None = None
        self.unk_token_id = self._token_id("unk_token")
        self.bos_token_id = self._token_id("bos_token")
        self.eos_token_id = self._token_id("eos_token")
        self.pad_token_id = self._token_id("pad_token")
        # add_bos_token/add_eos_token in tokenizer_config.json change nothing: transformers 5 drops them on load
        # (tokenizer.json's post-processor decides), and the test pins that.
        # transformers skips this clean-up for BPE models (it strips spaces before punctuation) unless forced.
        self._clean_up = bool(config.get("clean_up_tokenization_spaces", False)) and (
            type(tokenizer.model).__name__ != "BPE"
            or bool(
                config.get("clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False)
            )
        )
        self.chat_template = chat_template
        self._template = _compile_template(chat_template)
        self._generation_eos = tuple(generation_eos)

    @classmethod
    def from_folder(cls, folder: Path | str) -> ChatTokenizer:
        """Load ``folder`` as transformers saves a tokenizer; TokenizerUnavailable names what is missing."""
        folder = Path(folder)
        tokenizer_file = folder / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise TokenizerUnavailable(f"no tokenizer.json in {folder}")
        config = _read_json(folder / "tokenizer_config.json") or {}
        if "added_tokens_decoder" not in config:  # as transformers: this file's tokens win over the config's
            config = {**config, **(_read_json(folder / SPECIAL_TOKENS_MAP_FILE) or {})}
        template = _chat_template(folder, config)
        generation = _read_json(folder / "generation_config.json") or {}
        return cls(
            Tokenizer.from_file(str(tokenizer_file)),
            config,
            template,
            _id_list(generation.get("eos_token_id")),
        )

    # ---- what the engines call ----

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens that are set (the chat template sees them under these names)."""
        return dict(self._special)

    def eos_ids(self) -> frozenset[int]:
        """Every token that ends a generation: the tokenizer's eos and generation_config.json's eos_token_id."""
        ids = set(self._generation_eos)
        if self.eos_token_id is not None:
            ids.add(self.eos_token_id)
        return frozenset(ids)

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
        tokenize: bool = False,
        return_dict: bool = True,
    ) -> str | list[int] | dict[str, list[int]]:
        """The template rendered over ``messages`` as transformers renders it (keys whose value is None
        dropped). With ``tokenize`` its ids, without adding special tokens (the template spells them out):
        ``{"input_ids": ids}``, or the bare list with ``return_dict=False`` (transformers 5's defaults)."""
        conversation = [
            {str(key): _plain(value) for key, value in message.items() if value is not None}
            for message in messages
        ]
        text = self._template.render(
            **self._special,
            messages=[_alias_reasoning(message) for message in conversation],
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
        )
        if not tokenize:
            return text
        ids = self.encode(text, add_special_tokens=False)
        return {"input_ids": ids} if return_dict else ids

    # add_special_tokens defaults to True as in transformers: what tokenizer.json's post-processor adds.
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": self.encode(text, add_special_tokens=add_special_tokens)}

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        text = self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        return _clean_up_tokenization(text) if self._clean_up else text

    def convert_tokens_to_ids(self, token: str) -> int | None:
        """A token's id; the unknown token's for one outside the vocabulary (as transformers answers)."""
        found = self._tokenizer.token_to_id(token)
        return found if found is not None else self.unk_token_id

    def _token_id(self, name: str) -> int | None:
        token = self._special.get(name)
        return None if token is None else self.convert_tokens_to_ids(token)


# ---- loading ----


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TokenizerUnavailable(f"{path} cannot be read: {err}") from err
    if not isinstance(data, dict):
        raise TokenizerUnavailable(f"{path} is not a JSON object")
    return data


def _chat_template(folder: Path, config: Mapping[str, Any]) -> str:
    """chat_template.jinja first (transformers reads that file over the config's), else tokenizer_config's
    "chat_template": a string, or a list of {"name", "template"} whose "default" one is used."""
    template_file = folder / CHAT_TEMPLATE_FILE
    if template_file.is_file():
        return template_file.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if not isinstance(template, str) or not template:
        raise TokenizerUnavailable(
            f"no chat template in {folder}: neither {CHAT_TEMPLATE_FILE} nor a (default) chat_template "
            "in tokenizer_config.json"
        )
    return template


def _token_content(value: Any) -> str | None:
    """A special token as tokenizer_config.json spells it: a string, or (older files) {"__type":
    "AddedToken", "content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _added_token(value: Any, special: bool) -> AddedToken | None:
    content = _token_content(value)
    if content is None:
        return None
    options = {k: bool(value[k]) for k in _ADDED_TOKEN_OPTIONS if isinstance(value, dict) and k in value}
    options["special"] = special or options.get("special", False)
    return AddedToken(content, **options)


def _add_missing_tokens(tokenizer: Tokenizer, config: Mapping[str, Any], special: Mapping[str, str]) -> None:
    """What transformers adds on load: added_tokens_decoder entries, named and extra special tokens that
    the tokenizer.json does not hold yet (as special tokens)."""
    known = {str(token.content) for token in tokenizer.get_added_tokens_decoder().values()}
    wanted: list[AddedToken] = []

    def want(token: AddedToken | None) -> None:
        if token is not None and token.content not in known:
            known.add(token.content)
            wanted.append(token)

    decoder = config.get("added_tokens_decoder") or {}
    for _, value in sorted(decoder.items(), key=lambda item: int(item[0])):
        want(_added_token(value, special=False))
    for name in NAMED_SPECIAL_TOKENS:
        if name in special:
            want(_added_token(config.get(name), special=True))
    for key in ("extra_special_tokens", "additional_special_tokens"):
        extra = config.get(key)
        for value in extra.values() if isinstance(extra, dict) else extra or ():
            want(_added_token(value, special=True))
    if wanted:
        tokenizer.add_tokens(wanted)


def _id_list(value: Any) -> list[int]:
    values = value if isinstance(value, list) else [value]
    return [int(v) for v in values if v is not None]


# ---- the chat template, rendered as transformers renders it (utils/chat_template_utils.py) ----


class _TemplateDict:
    """``dict`` for templates without its attributes (no way out of the sandbox through them)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    """A namespace that refuses underscore-prefixed attributes (CPython internals)."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # jinja's signature trick: `self` may be a key
        self, rest = args[0], args[1:]
        attrs = dict(*rest, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"chat templates cannot store underscore-prefixed attributes on a namespace: {name!r}"
            )


class _GenerationBlock(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` renders its body (transformers tracks assistant spans
    with it; prompts need only the text)."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        return str(caller())


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    # jinja's own tojson escapes HTML characters, which would change the prompt.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _compile_template(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as err:
        raise TokenizerUnavailable(f"the chat template does not parse: {err}") from err


def _plain(value: Any) -> Any:
    """Plain JSON-like data only: the sandbox must not see methods of richer objects."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if callable(getattr(value, "model_dump", None)):
        return _plain(value.model_dump())
    return f"<{type(value).__name__}>"


_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def _alias_reasoning(message: dict[str, Any]) -> dict[str, Any]:
    """A message's reasoning under every name templates read it by (as transformers passes it)."""
    reasoning = next((message[key] for key in _REASONING_FIELDS if message.get(key) is not None), None)
    if reasoning is None:
        return message
    return {"thinking": reasoning, **message, "reasoning_content": reasoning}


def _clean_up_tokenization(text: str) -> str:
    for before, after in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(before, after)
    return text
