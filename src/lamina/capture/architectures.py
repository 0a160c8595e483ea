"""Where each layer of a causal LM writes: all of lamina's architecture knowledge.

A *site* is a vector that a decoder layer computes at every token position:

``attn_out``
    the output of the attention block's output projection (what attention adds
    to the residual stream; the reference study's site);
``mlp_out``
    what the layer's MLP block adds to the residual stream;
``resid_post``
    the hidden state the decoder layer hands to the next layer (the output of
    the decoder layer module, before any final norm);
``attn_head``
    the contribution of each attention head to ``attn_out``: the output
    projection's input split into heads, times that head's slice of the
    projection's weight, so that the heads' vectors plus the projection's bias
    sum to ``attn_out``.

Every site is read from a Hugging Face module of the model itself (a forward
hook on the module's output; for ``attn_head`` a pre-hook on the output
projection's input), so the numbers are exactly those ``transformers``
computes. Each site is located by a *module template*, a dotted module path
with a ``{layer}`` field, e.g. ``"transformer.h.{layer}.attn.c_proj"``.

Templates come from, in order of precedence: an explicit template given by the
user, the table of known families (:data:`FAMILY_SITES`), or discovery (the
decoder-layer list, then the attention output projection by its usual names).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from lamina.errors import CaptureError
from lamina.sources.hfconfig import config_dims, text_config

if TYPE_CHECKING:
    from torch import nn

SITES: tuple[str, ...] = ("attn_out", "mlp_out", "resid_post", "attn_head")
"""Site names, in the order their columns appear in the token table."""

LAYER_FIELD = "{layer}"


@dataclasses.dataclass(frozen=True)
class FamilySites:
    """Module paths of one architecture family.

    ``layers`` is the dotted path of the decoder-layer ``ModuleList``; the other
    fields are paths relative to one decoder layer. ``resid_post`` is always the
    decoder layer itself.
    """

    layers: str
    attn_out: str
    mlp_out: str


# Families whose layout each family test proves (tests/capture/test_families.py).
# Notes on the non-obvious entries:
# - BLOOM's attention and MLP modules add the residual stream to their output,
#   so the sites are their inner projections (self_attention.dense, mlp.dense_4h_to_h).
# - OPT's decoder layer has no MLP module: fc2 is the MLP's last projection.
# - GPT-J, GPT-NeoX, Falcon and Phi run attention and MLP in parallel from the
#   same input; attn_out and mlp_out are still what each adds to the stream.
FAMILY_SITES: dict[str, FamilySites] = {
    "gpt2": FamilySites("transformer.h", "attn.c_proj", "mlp"),
    "gpt_neo": FamilySites("transformer.h", "attn.attention.out_proj", "mlp"),
    "gptj": FamilySites("transformer.h", "attn.out_proj", "mlp"),
    "gpt_neox": FamilySites("gpt_neox.layers", "attention.dense", "mlp"),
    "opt": FamilySites("model.decoder.layers", "self_attn.out_proj", "fc2"),
    "bloom": FamilySites("transformer.h", "self_attention.dense", "mlp.dense_4h_to_h"),
    "falcon": FamilySites("transformer.h", "self_attention.dense", "mlp"),
    "llama": FamilySites("model.layers", "self_attn.o_proj", "mlp"),
    "mistral": FamilySites("model.layers", "self_attn.o_proj", "mlp"),
    "qwen2": FamilySites("model.layers", "self_attn.o_proj", "mlp"),
    "gemma": FamilySites("model.layers", "self_attn.o_proj", "mlp"),
    "phi": FamilySites("model.layers", "self_attn.dense", "mlp"),
}

#: Families whose key/value cache ``--windows stream`` cuts and continues exactly
#: (tests/capture/test_stream.py proves each against one masked forward pass).
#: BLOOM (ALiBi masks) and OPT (positions from the attention mask) do not accept
#: the positions and cache indices the chunks need.
STREAM_FAMILIES: tuple[str, ...] = (
    "gpt2",
    "gpt_neo",
    "gptj",
    "gpt_neox",
    "falcon",
    "llama",
    "mistral",
    "qwen2",
    "gemma",
    "phi",
    "gpt_bigcode",
    "qwen3",
)


def check_stream_support(model_type: str) -> None:
    """Refuse ``--windows stream`` for an architecture lamina has not verified it on."""
    if model_type not in STREAM_FAMILIES:
        raise CaptureError(
            f"--windows stream is verified for {', '.join(STREAM_FAMILIES)}, not for "
            f"{model_type!r}; use --windows all, which works for every model."
        )


# Discovery: usual names, most specific first.
_ATTENTION_NAMES = ("self_attn", "self_attention", "attn", "attention", "mixer")
_OUT_PROJ_NAMES = ("o_proj", "out_proj", "c_proj", "dense", "wo", "out")
_MLP_NAMES = ("mlp", "feed_forward", "ffn", "ff")
_LAYER_LIST_NAMES = ("layers", "h", "blocks", "layer", "decoder_layers")


@dataclasses.dataclass(frozen=True)
class ResolvedSites:
    """The modules a capture hooks, for one model.

    ``templates`` maps each requested site to its module template (a dotted path
    with ``{layer}``); ``attn_head`` uses the ``attn_out`` module's input.
    ``source`` says where each template came from: ``"family"`` (the table of
    known families), ``"discovery"`` or ``"template"`` (given by the user).
    """

    model_type: str
    n_layers: int
    n_heads: int | None
    sites: tuple[str, ...]
    templates: dict[str, str]
    source: dict[str, str]

    def module_path(self, site: str, layer: int) -> str:
        """Dotted path of the module read for ``site`` at ``layer``."""
        return self.templates[site].format(layer=layer)

    def module_paths(self, site: str) -> list[str]:
        """Dotted module path of ``site`` for every layer, layer 0 first."""
        return [self.module_path(site, layer) for layer in range(self.n_layers)]

    def column_names(self) -> list[str]:
        """The token table's column of every site, layer (and head), in table order."""
        from lamina.table import site_column

        names = []
        for site in self.sites:
            for layer in range(self.n_layers):
                if site == "attn_head":
                    names += [site_column(site, layer, h) for h in range(self.n_heads or 0)]
                else:
                    names.append(site_column(site, layer))
        return names


def parse_sites(sites: str | Iterable[str]) -> tuple[str, ...]:
    """Normalise a site list (``"attn_out,mlp_out"``, ``"all"`` or an iterable) to table order.

    Raises :class:`CaptureError` for an unknown or empty site list.
    """
    names = sites.split(",") if isinstance(sites, str) else list(sites)
    names = [name.strip() for name in names if name and name.strip()]
    if names == ["all"]:
        return SITES
    if not names:
        raise CaptureError(f"no site given; choose one or more of {', '.join(SITES)}.")
    for name in names:
        if name not in SITES:
            raise CaptureError(
                f"unknown site {name!r}; choose one or more of {', '.join(SITES)}, or all."
            )
    return tuple(site for site in SITES if site in names)


def parse_site_templates(
    templates: str | Iterable[str] | Mapping[str, str] | None,
) -> dict[str, str]:
    """Normalise user site templates to ``{site: template}``.

    A bare template (``"transformer.h.{layer}.attn.c_proj"``) names the
    attention output projection (``attn_out``, whose input ``attn_head`` also
    reads); ``"SITE=TEMPLATE"`` names the module of another site.
    """
    if templates is None:
        return {}
    if isinstance(templates, Mapping):
        items = list(templates.items())
    else:
        items = []
        for text in [templates] if isinstance(templates, str) else templates:
            site, sep, template = text.partition("=")
            items.append((site.strip(), template.strip()) if sep else ("attn_out", text.strip()))
    result: dict[str, str] = {}
    for site, template in items:
        if site not in SITES:
            raise CaptureError(
                f"unknown site {site!r} in a site template; use one of {', '.join(SITES)}."
            )
        if site == "attn_head":
            site = "attn_out"
        if LAYER_FIELD not in template or re.search(r"\{(?!layer\})", template):
            raise CaptureError(
                f"site template {template!r} must contain {LAYER_FIELD} and no other "
                "{...} field, e.g. 'transformer.h.{layer}.attn.c_proj'."
            )
        result[site] = template
    return result


def resolve_sites(
    model: nn.Module,
    sites: str | Iterable[str] = ("attn_out",),
    site_template: str | Iterable[str] | Mapping[str, str] | None = None,
) -> ResolvedSites:
    """Find the module of every requested site in every decoder layer of ``model``.

    Raises :class:`CaptureError` for an unknown site, a template that names no
    module, or a model whose modules cannot be found (the message lists the
    candidate module paths to pass as a site template).
    """
    wanted = parse_sites(sites)
    explicit = parse_site_templates(site_template)
    config = _text_config(model)
    model_type = str(getattr(config, "model_type", "") or type(model).__name__)
    _check_supported_options(model_type, config)
    family = FAMILY_SITES.get(model_type)

    layers_path = family.layers if family is not None else None
    if layers_path is None or _get(model, layers_path) is None:
        # unknown family, or a known one wrapped differently (e.g. inside a multimodal model)
        layers_path = _discover_layer_list(model, config)

    needed = {"attn_out" if site == "attn_head" else site for site in wanted}
    templates: dict[str, str] = {}
    source: dict[str, str] = {}
    for site in ("attn_out", "mlp_out", "resid_post"):
        if site not in needed:
            continue
        if site in explicit:
            templates[site], source[site] = explicit[site], "template"
            continue
        if layers_path is None:
            raise CaptureError(
                f"cannot find the decoder-layer list of model type {model_type!r}; name the "
                f"{site} module with a site template; module lists in this model: "
                f"{_describe_module_lists(model)}."
            )
        if family is not None:
            relative = {"attn_out": family.attn_out, "mlp_out": family.mlp_out}.get(site, "")
            templates[site], source[site] = _join(layers_path, LAYER_FIELD, relative), "family"
        else:
            templates[site], source[site] = _discover_site(model, layers_path, site, model_type)
    n_layers = _count_layers(model, layers_path, templates)
    for site, template in templates.items():
        _check_template(model, site, template, n_layers, layers_path)
    n_heads = config_dims(config).n_heads or None
    if "attn_head" in wanted:
        if n_heads is None:
            raise CaptureError(
                f"the config of model type {model_type!r} does not say how many attention "
                "heads it has (num_attention_heads), so attn_head cannot be captured."
            )
        _check_head_split(model, templates["attn_out"].format(layer=0), n_heads)
        templates["attn_head"], source["attn_head"] = templates["attn_out"], source["attn_out"]
    return ResolvedSites(
        model_type=model_type,
        n_layers=n_layers,
        n_heads=n_heads,
        sites=wanted,
        templates={site: templates[site] for site in wanted},
        source={site: source[site] for site in wanted},
    )


def context_length(model: nn.Module) -> int | None:
    """The longest input the model's position scheme was trained for, or None if unknown."""
    return config_dims(_text_config(model)).context_length or None


def projection_layout(module: nn.Module) -> str:
    """How a projection stores its weight: ``"linear"`` ``(d_out, d_in)`` or ``"conv1d"`` ``(d_in, d_out)``.

    ``"conv1d"`` is GPT-2-style ``transformers.pytorch_utils.Conv1D``
    (``y = x @ W + b``); ``"linear"`` is ``torch.nn.Linear`` and subclasses
    (``y = x @ W.T + b``). Anything else raises :class:`CaptureError`.
    """
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    if isinstance(module, Conv1D):
        return "conv1d"
    if isinstance(module, nn.Linear):
        return "linear"
    raise CaptureError(
        f"the attention output projection is a {type(module).__name__}, not a Linear or "
        "Conv1D layer, so attn_head cannot split it per head; capture attn_out instead."
    )


# ----------------------------------------------------------------------------- internals


def _text_config(model: nn.Module):
    config = getattr(model, "config", None)
    if config is None:
        raise CaptureError(
            f"{type(model).__name__} has no Hugging Face config; lamina reads transformers models."
        )
    return text_config(config)


def _join(*parts: str) -> str:
    return ".".join(part for part in parts if part)


def _get(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path) if path else model
    except AttributeError:
        return None


def _module_lists(model: nn.Module) -> list[tuple[str, int]]:
    from torch import nn

    return [
        (name, len(module))
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) > 0
    ]


def _describe_module_lists(model: nn.Module) -> str:
    lists = _module_lists(model)
    if not lists:
        return "none"
    return ", ".join(f"{name} ({length})" for name, length in lists[:12])


def _discover_layer_list(model: nn.Module, config) -> str | None:
    """The decoder-layer list: a ModuleList of ``num_hidden_layers`` blocks, by usual names."""
    n_hidden = config_dims(config).n_layers
    candidates = []
    for name, length in _module_lists(model):
        if n_hidden and length != n_hidden:
            continue
        last = name.rsplit(".", 1)[-1]
        score = (
            last in _LAYER_LIST_NAMES,
            "vision" not in name and "encoder" not in name,
            length,
            -name.count("."),
        )
        candidates.append((score, name))
    if not candidates:
        return None
    return max(candidates)[1]


def _linear_children(layer: nn.Module, hidden_size: int | None) -> list[str]:
    """Paths (relative to a layer) of projections whose output has the hidden size."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    found = []
    for name, module in layer.named_modules():
        if isinstance(module, nn.Linear):
            d_out = module.out_features
        elif isinstance(module, Conv1D):
            d_out = module.nf
        else:
            continue
        if hidden_size is None or d_out == hidden_size:
            found.append(name)
    return found


def _discover_site(
    model: nn.Module, layers_path: str, site: str, model_type: str
) -> tuple[str, str]:
    layer_template = _join(layers_path, LAYER_FIELD)
    if site == "resid_post":
        return layer_template, "discovery"
    layer0 = model.get_submodule(_join(layers_path, "0"))
    children = dict(layer0.named_children())
    if site == "attn_out":
        for attn_name in _ATTENTION_NAMES:
            attention = children.get(attn_name)
            if attention is None:
                continue
            # the projection may sit one module deeper (GPT-Neo: attn.attention.out_proj)
            for prefix, parent in [("", attention), *attention.named_children()]:
                sub = dict(parent.named_children())
                for proj_name in _OUT_PROJ_NAMES:
                    if proj_name in sub:
                        relative = _join(attn_name, prefix, proj_name)
                        return _join(layer_template, relative), "discovery"
    else:  # mlp_out
        for mlp_name in _MLP_NAMES:
            if mlp_name in children:
                return _join(layer_template, mlp_name), "discovery"
    raise CaptureError(
        f"cannot find the {site} module of model type {model_type!r}; name it with a site "
        f"template ('{site}=PATH' with {LAYER_FIELD}), e.g. one of: "
        f"{_candidates(model, layers_path)}."
    )


def _count_layers(model: nn.Module, layers_path: str | None, templates: dict[str, str]) -> int:
    if layers_path is not None:
        layers = _get(model, layers_path)
        if layers is not None and hasattr(layers, "__len__"):
            return len(layers)
    n_hidden = config_dims(_text_config(model)).n_layers
    if n_hidden:
        return n_hidden
    template = next(iter(templates.values()))
    n_layers = 0
    while _get(model, template.format(layer=n_layers)) is not None:
        n_layers += 1
    return n_layers


def _check_template(
    model: nn.Module, site: str, template: str, n_layers: int, layers_path: str | None
) -> None:
    if n_layers < 1:
        raise CaptureError(f"no decoder layer found for the {site} template {template!r}.")
    for layer in range(n_layers):
        if _get(model, template.format(layer=layer)) is None:
            raise CaptureError(
                f"the {site} template {template!r} names no module at layer {layer}; "
                f"candidates: {_candidates(model, layers_path)}."
            )


def _candidates(model: nn.Module, layers_path: str | None) -> str:
    """Module templates worth trying: a layer's projections, else the model's module lists."""
    if layers_path is None:
        return f"module lists {_describe_module_lists(model)}"
    layer0 = _get(model, _join(layers_path, "0"))
    if layer0 is None:
        return f"module lists {_describe_module_lists(model)}"
    hidden = config_dims(_text_config(model)).hidden_size or None
    names = _linear_children(layer0, hidden) or [name for name, _ in layer0.named_children()]
    return ", ".join(_join(layers_path, LAYER_FIELD, name) for name in names[:12])


def _check_head_split(model: nn.Module, path: str, n_heads: int) -> None:
    module = model.get_submodule(path)
    layout = projection_layout(module)
    d_in = module.weight.shape[0] if layout == "conv1d" else module.weight.shape[1]
    if d_in % n_heads:
        raise CaptureError(
            f"the input of {path} has {d_in} features, not a multiple of the model's {n_heads} "
            "heads, so attn_head cannot split it; capture attn_out instead."
        )


def _check_supported_options(model_type: str, config) -> None:
    if (
        model_type == "bloom"
        and getattr(config, "pretraining_tp", 1) > 1
        and getattr(config, "slow_but_exact", False)
    ):
        raise CaptureError(
            "this BLOOM config sets slow_but_exact=True, which bypasses the projection modules "
            "lamina hooks; load it with slow_but_exact=False (the numbers agree to rounding)."
        )
