"""A loaded model (:class:`LoadedModel`), the report of what was loaded (:class:`ModelReport`),
and a model and tokenizer already loaded in Python (a notebook's) wrapped into one.

:func:`lamina.sources.load_model` loads a model from a spec (:mod:`lamina.sources.models`)
or, given a ``transformers`` causal LM object and its tokenizer, calls
:func:`from_objects` here: nothing is read from disk, the model is neither moved, cast
nor switched to eval mode unless asked (extraction runs its forward passes in eval mode
under ``torch.inference_mode`` and restores the model's mode after), and the report
identifies it by content:

* ``spec`` ``"<GPT2LMHeadModel passed in>"``, ``source`` ``"object"``, ``architecture``
  the class name;
* ``config_sha256``: the sha256 of the config's JSON (see :func:`config_sha256`);
* ``fingerprint``: ``"sha256-tensors:<hex>"``, see :func:`tensors_fingerprint`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lamina.errors import InputError, ModelLoadError
from lamina.sources.hfconfig import config_dims

if TYPE_CHECKING:
    import torch
    import transformers

__all__ = [
    "BOOKKEEPING_KEYS",
    "FINGERPRINT_PREFIX",
    "LoadedModel",
    "ModelReport",
    "as_loaded",
    "check_vocabulary",
    "config_sha256",
    "from_objects",
    "is_loaded_model",
    "tensors_fingerprint",
]

#: The prefix of a passed-in model's fingerprint (a hash of tensors, not of a file).
FINGERPRINT_PREFIX = "sha256-tensors:"


@dataclass(frozen=True)
class ModelReport:
    """What was loaded, as later outputs record it.

    ``fingerprint`` identifies the weights: ``hub:<commit sha>`` for hub models,
    ``sha256:<hex>`` of the weights file for GGUF and single-file directories, and
    for sharded directories the sha256 of the ``sha256sum``-style listing
    (``"<hex>  <file name>\\n"`` per shard, sorted by name); for a model passed in
    as an object, ``sha256-tensors:<hex>`` (:func:`tensors_fingerprint`).
    ``context_length`` is the model's maximum number of positions (0 when the config
    sets none). ``n_params`` counts tied parameters once. ``config_sha256`` (a model
    passed in as an object only) is the sha256 of its config's JSON. ``dtype_reason``:
    why ``--dtype auto`` chose the dtype on a CPU (:mod:`lamina.sources.cpu_precision`).
    """

    spec: str
    name: str
    source: str  # "embedded" | "hub" | "local" | "gguf" | "object"
    architecture: str
    n_layers: int
    hidden_size: int
    n_heads: int
    context_length: int
    n_params: int
    dtype: str
    device: str
    revision: str | None
    fingerprint: str
    config_sha256: str | None = None
    dtype_reason: str | None = None  # why ``--dtype auto`` chose ``dtype`` on a CPU

    def to_dict(self) -> dict:
        out = asdict(self)
        if out["dtype_reason"] is None:
            del out["dtype_reason"]  # tables written before it existed compare equal
        return out

    def format(self) -> str:
        """A multi-line human summary."""
        context = f"{self.context_length:,}" if self.context_length else "not fixed"
        where = self.source if self.revision is None else f"{self.source}, revision {self.revision}"
        lines = [
            f"model         {self.name} ({where}; spec {self.spec!r})",
            f"architecture  {self.architecture}: {self.n_layers} layers, hidden size "
            f"{self.hidden_size}, {self.n_heads} attention heads, context {context} tokens",
            f"parameters    {self.n_params:,}",
            f"dtype/device  {self.dtype} on {self.device}",
            f"fingerprint   {self.fingerprint}",
        ]
        if self.config_sha256:
            lines.append(f"config        sha256:{self.config_sha256}")
        return "\n".join(lines)


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer, and its report.

    Loaded from a spec, the model is in eval mode with gradients off; passed in as
    an object, it is left as it was given (extraction switches it to eval mode for
    its forward passes only).
    """

    model: transformers.PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase
    report: ModelReport

    def __repr__(self) -> str:
        r = self.report
        return (
            f"LoadedModel({r.name!r}, {r.source}, {r.n_layers} layers, {r.dtype} on "
            f"{r.device}, {r.fingerprint[:31]}…)"
        )


def is_loaded_model(obj: Any) -> bool:
    """Whether ``obj`` is a :class:`LoadedModel` or looks like one (model, tokenizer, report).

    A ``torch`` module never does, even one with a ``model`` attribute (Llama's has).
    """
    if isinstance(obj, LoadedModel):
        return True
    if not all(hasattr(obj, name) for name in ("model", "tokenizer")):
        return False
    import torch

    return not isinstance(obj, torch.nn.Module)


def as_loaded(
    loaded: Any = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    caller: str = "extract",
) -> Any:
    """What a function taking a loaded model (``caller``) was given, as a :class:`LoadedModel`.

    ``loaded`` is a :class:`LoadedModel` (returned as it is), a causal LM object or a
    ``(model, tokenizer)`` pair; or ``loaded`` is None and ``model`` (with ``tokenizer``)
    is given. Anything else is one sentence (:class:`InputError`).
    """
    if loaded is not None and model is not None:
        raise InputError(f"{caller} got a model twice (positionally and as model=): give it once.")
    given = loaded if loaded is not None else model
    if given is None:
        raise InputError(
            f"{caller} needs a model: pass model= and tokenizer= (objects loaded with "
            "transformers), or what lamina.load_model returned."
        )
    if isinstance(given, str):
        raise InputError(
            f"{caller} takes a loaded model, not the spec {given!r}: call "
            f"lamina.load_model({given!r}) first, or pass model= and tokenizer=."
        )
    if is_loaded_model(given):
        if tokenizer is not None:
            raise InputError(
                f"{caller} got a tokenizer with a LoadedModel, which has its own: drop tokenizer=."
            )
        return given
    return from_objects(given, tokenizer)


def from_objects(
    model: Any,
    tokenizer: Any = None,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedModel:
    """A causal LM and tokenizer already loaded with ``transformers``, as a :class:`LoadedModel`.

    ``model`` may also be a ``(model, tokenizer)`` pair. ``device``/``dtype``: None
    leaves the model where and as it is; else it is moved or cast in place
    (``model.to``). The model's training mode and ``requires_grad`` flags are left as
    they are. Refused with one sentence: an object that is not a ``transformers``
    model, a model without a causal LM head, a missing tokenizer or one too large for
    the model's embeddings, weights on the meta device.
    """
    if isinstance(model, tuple | list) and len(model) == 2 and tokenizer is None:
        model, tokenizer = model
    _check_model(model)
    _check_tokenizer(model, tokenizer)
    _move(model, device, dtype)
    return LoadedModel(model=model, tokenizer=tokenizer, report=_object_report(model))


def _check_model(model: Any) -> None:
    """Refuse anything but a decoder-only ``transformers`` model with its LM head."""
    from transformers import PreTrainedModel
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    kind = type(model).__name__
    if not isinstance(model, PreTrainedModel):
        raise InputError(
            "a model must be a model spec (a string) or a transformers causal LM "
            f"(a PreTrainedModel, e.g. from AutoModelForCausalLM); got {kind}."
        )
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        raise InputError(
            f"{kind} is an encoder-decoder model, not a causal language model: pass a "
            "decoder-only LM such as GPT-2, Pythia, Llama or SmolLM2."
        )
    if model.get_output_embeddings() is None:
        raise InputError(
            f"{kind} has no language-model head, so it predicts no tokens: load it with "
            "AutoModelForCausalLM instead."
        )
    if "MaskedLM" in kind or (
        getattr(config, "model_type", None) in MODEL_FOR_MASKED_LM_MAPPING_NAMES
        and not getattr(config, "is_decoder", False)
    ):
        raise InputError(
            f"{kind} is a bidirectional (masked) model, not a causal language model: pass a "
            "decoder-only LM such as GPT-2, Pythia, Llama or SmolLM2."
        )
    if any(p.device.type == "meta" for p in model.parameters()):
        raise InputError(
            f"{kind} has weights on the meta device (not loaded): load its weights first."
        )


def _check_tokenizer(model: Any, tokenizer: Any) -> None:
    from transformers import PreTrainedTokenizerBase

    kind = type(model).__name__
    if tokenizer is None:
        raise InputError(
            f"a {kind} passed in needs its tokenizer too: call lamina.load_model(model, "
            "tokenizer), or pass tokenizer=."
        )
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise InputError(
            "the tokenizer must be a transformers tokenizer (from AutoTokenizer); got "
            f"{type(tokenizer).__name__}."
        )
    check_vocabulary(model, tokenizer, f"the {kind} passed in")


def check_vocabulary(model: Any, tokenizer: Any, what: str) -> None:
    """Refuse a tokenizer with more ids than the model embeds (one sentence)."""
    n_embeddings = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > n_embeddings:
        raise ModelLoadError(
            f"the tokenizer of {what} has {len(tokenizer):,} tokens but the model embeds only "
            f"{n_embeddings:,}: pair the model with its own tokenizer."
        )


def _move(model: Any, device: torch.device | None, dtype: torch.dtype | None) -> None:
    """Move or cast the model in place where asked (None: leave it)."""
    if device is not None:
        model.to(device)
    if dtype is not None:
        model.to(dtype)


def _first(model: Any) -> torch.Tensor:
    """The model's first floating-point parameter (else its first)."""
    params = list(model.parameters())
    return next((p for p in params if p.is_floating_point()), params[0])


def _object_report(model: Any) -> ModelReport:
    kind = type(model).__name__
    dims = config_dims(model.config)
    path = str(getattr(model.config, "_name_or_path", "") or "").rstrip("/\\")
    name = path.replace("\\", "/").rsplit("/", 1)[-1] or kind
    first = _first(model)
    return ModelReport(
        spec=f"<{kind} passed in>",
        name=name,
        source="object",
        architecture=kind,
        n_layers=dims.n_layers,
        hidden_size=dims.hidden_size,
        n_heads=dims.n_heads,
        context_length=dims.context_length,
        n_params=sum(p.numel() for p in model.parameters()),
        dtype=str(first.dtype).removeprefix("torch."),
        device=str(first.device),
        revision=None,
        fingerprint=tensors_fingerprint(model),
        config_sha256=config_sha256(model.config),
    )


#: Config entries that say nothing about what the model computes (``save_pretrained``
#: sets the first two; the dtype is the report's own field): left out of the config hash.
BOOKKEEPING_KEYS = (
    "architectures",
    "dtype",
    "torch_dtype",
    "_name_or_path",
    "_commit_hash",
    "transformers_version",
)


def config_sha256(config: Any) -> str:
    """The sha256 (hex) of the config's JSON without :data:`BOOKKEEPING_KEYS`.

    The JSON is ``config.to_json_string(use_diff=False)`` (every attribute) read back,
    the bookkeeping keys removed, and written again with ``json.dumps(..., sort_keys=True,
    separators=(",", ":"))``, UTF-8.
    """
    entries = json.loads(config.to_json_string(use_diff=False))
    for key in BOOKKEEPING_KEYS:
        entries.pop(key, None)
    canonical = json.dumps(entries, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def tensors_fingerprint(model: Any) -> str:
    """``"sha256-tensors:<hex>"``: one sha256 over every tensor of ``model.state_dict()``.

    In the order of the names (sorted), each tensor adds to the hash its name, dtype
    and shape, as ``f"{name}\\0{dtype}\\0{shape}\\0"`` in UTF-8 (``dtype`` as
    ``str(tensor.dtype)``, e.g. ``torch.float32``; ``shape`` the sizes joined by
    ``,``), then its bytes: the contiguous CPU copy's raw memory (little-endian on
    every machine torch runs on). The same weights in another dtype (float32 vs
    bfloat16) or on another device give another or the same fingerprint respectively;
    tied weights count under each of their names. One tensor at a time is copied to
    the CPU, so a model on a GPU needs no second copy of itself.
    """
    import torch

    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach()
        shape = ",".join(str(size) for size in tensor.shape)
        digest.update(f"{name}\0{tensor.dtype}\0{shape}\0".encode())
        flat = tensor.to("cpu").contiguous().reshape(-1)
        if flat.numel():
            digest.update(flat.view(torch.uint8).numpy())
    return FINGERPRINT_PREFIX + digest.hexdigest()
