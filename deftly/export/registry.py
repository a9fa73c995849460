"""Architectures by name, so an exported learner names its model instead of pickling it.

A model that can be exported carries `model.arch_spec`: `{"name": ..., "args": [...], "kwargs": {...}}`,
plain JSON data saying which registered factory built it and with what arguments. deftly's own
models record theirs when they are built (`TabularModel`, `EmbeddingDotBias`, `EmbeddingNN`,
`create_cnn_model`, `get_language_model`, `get_text_classifier`); the factories that rebuild them
are registered here under names starting with `deftly.`. A user's own architecture registers itself:

    @register_arch("my_net")
    def my_net(n_in: int, n_out: int) -> nn.Module: ...

    learn = Learner(data, my_net(784, 10)); learn.export()   # the manifest says {"name": "my_net", ...}
    load_learner(path)   # in a process that imported the module defining my_net

An `nn.Module` subclass can be registered too; it then says its own arguments with a `get_config()`
method returning its constructor's keyword arguments (as Keras layers do).
Nothing here is ever unpickled or evaluated: a name is looked up in this registry and called
with JSON values.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, TypeVar

from torch import nn

from deftly.core.errors import ConfigError, ExportError

__all__ = ["ArchSpec", "arch_spec_of", "build_from_spec", "get_arch_factory", "list_archs", "register_arch"]

ArchSpec = dict[str, Any]
F = TypeVar("F", bound=Callable[..., Any])

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
_CLASS_NAMES: dict[type, str] = {}  # registered nn.Module classes -> their names
_BUILTIN_PREFIX = "deftly."


def _spec(name: str, args: tuple, kwargs: dict[str, Any]) -> ArchSpec:
    return {"name": name, "args": list(args), "kwargs": dict(kwargs)}


def register_arch(name: str) -> Callable[[F], F]:
    """Decorator: register a model factory under `name` so `learn.export()` can name the model and
    `load_learner` can rebuild it. A factory function is wrapped so its models remember their
    arguments; an nn.Module class is registered as it is and must say its own arguments with a
    `get_config()` method returning its constructor's keyword arguments (as Keras layers do)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"register_arch needs a non-empty name, got {name!r}")
    if name.startswith(_BUILTIN_PREFIX):
        raise ConfigError(f"architecture names starting with {_BUILTIN_PREFIX!r} are deftly's own; pick another "
                          f"name than {name!r}")

    def decorate(factory: F) -> F:
        if inspect.isclass(factory):
            if not issubclass(factory, nn.Module):
                raise ConfigError(f"register_arch({name!r}) decorates a model factory or an nn.Module class, "
                                  f"not the class {factory.__name__}")
            if not callable(getattr(factory, "get_config", None)):
                raise ConfigError(f"register_arch({name!r}): the class {factory.__name__} needs a get_config() method "
                                  "returning the keyword arguments that rebuild it, or register a factory function")
            _FACTORIES[name] = factory
            _CLASS_NAMES[factory] = name
            return factory
        if not callable(factory):
            raise ConfigError(f"register_arch({name!r}) decorates a function or class, got {type(factory).__name__}")

        @functools.wraps(factory)
        def build(*args: Any, **kwargs: Any) -> nn.Module:
            model = factory(*args, **kwargs)
            if not isinstance(model, nn.Module):
                raise ConfigError(f"the architecture {name!r} returned a {type(model).__name__}, not an nn.Module")
            model.arch_spec = _spec(name, args, kwargs)
            return model

        _FACTORIES[name] = build
        return build  # type: ignore[return-value]

    return decorate


def _builtin(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _FACTORIES[_BUILTIN_PREFIX + name] = fn
        return fn
    return decorate


def list_archs() -> list[str]:
    """The names `load_learner` can rebuild (deftly's own start with 'deftly.')."""
    return sorted(_FACTORIES)


def get_arch_factory(name: str) -> Callable[..., nn.Module]:
    """The factory registered under `name`; an ExportError that says how to register it otherwise."""
    factory = _FACTORIES.get(name) if isinstance(name, str) else None
    if factory is None:
        mine = [n for n in _FACTORIES if not n.startswith(_BUILTIN_PREFIX)]
        raise ExportError(f"unknown architecture {name!r}: it is not registered in this process (registered: "
                          f"{', '.join(mine) or 'none of your own'}; deftly's: {len(_FACTORIES) - len(mine)}). If it "
                          "is your own, import the module that defines it (decorated with "
                          f"@register_arch({name!r})) before load_learner")
    return factory


def arch_spec_of(model: nn.Module) -> ArchSpec:
    """The recorded architecture of `model` (name and arguments), or an ExportError saying how to get one."""
    spec = getattr(model, "arch_spec", None)
    if spec is None and type(model) in _CLASS_NAMES:  # a registered class says its own arguments
        config = model.get_config()
        if not isinstance(config, dict):
            raise ExportError(f"{type(model).__name__}.get_config() must return a dict of keyword arguments, "
                              f"got {type(config).__name__}")
        spec = _spec(_CLASS_NAMES[type(model)], (), config)
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ExportError(f"cannot export a {type(model).__name__}: it does not say how it was built. Build it with "
                          "a factory decorated with @register_arch('name') (deftly.export.register_arch), or use "
                          "deftly's own models and learner factories")
    return {"name": spec["name"], "args": list(spec.get("args", [])), "kwargs": dict(spec.get("kwargs", {}))}


def build_from_spec(spec: ArchSpec) -> nn.Module:
    """A fresh (untrained) model from a recorded architecture; errors are ExportErrors."""
    factory = get_arch_factory(spec.get("name"))
    args, kwargs = spec.get("args", []), spec.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ExportError(f"the arguments of architecture {spec.get('name')!r} are damaged (args must be a list, "
                          "kwargs an object)")
    try:
        model = factory(*args, **kwargs)
    except (TypeError, ValueError, ConfigError) as e:
        raise ExportError(f"cannot rebuild architecture {spec['name']!r} with the recorded arguments: {e}") from e
    if not isinstance(model, nn.Module):
        raise ExportError(f"architecture {spec['name']!r} built a {type(model).__name__}, not an nn.Module")
    return model


# --------------------------------------------------------------------------- deftly's own models
# Each imports its application only when called, so importing deftly.export stays light.


@_builtin("vision.cnn")
def _cnn(arch: str, nc: int, cut: int | None = None, lin_ftrs: list[int] | None = None,
         ps: float | list[float] = 0.5, bn_final: bool = False, concat_pool: bool = True) -> nn.Module:
    """`create_cnn_model` without pretrained weights, laid out channels-last as `cnn_learner` does."""
    import torch

    from deftly.vision.learner import create_cnn_model
    from deftly.vision.models import get_arch

    try:
        base = get_arch(arch)
    except ConfigError as e:
        raise ExportError(f"unknown vision architecture {arch!r} (register your own with deftly.vision.models."
                          f"register_arch(Arch({arch!r}, build, ...)) before exporting or loading): {e}") from e
    model = create_cnn_model(base, nc, cut=cut, pretrained=False, lin_ftrs=lin_ftrs, ps=ps, bn_final=bn_final,
                             concat_pool=concat_pool)
    return model.to(memory_format=torch.channels_last)


@_builtin("tabular.TabularModel")
def _tabular(**kwargs: Any) -> nn.Module:
    from deftly.tabular.models import TabularModel

    kwargs["emb_szs"] = [tuple(e) for e in kwargs.get("emb_szs", [])]
    return TabularModel(**kwargs)


@_builtin("collab.EmbeddingDotBias")
def _dot_bias(**kwargs: Any) -> nn.Module:
    from deftly.collab.models import EmbeddingDotBias

    return EmbeddingDotBias(**kwargs)


@_builtin("collab.EmbeddingNN")
def _embedding_nn(**kwargs: Any) -> nn.Module:
    from deftly.collab.models import EmbeddingNN

    kwargs["emb_szs"] = [tuple(e) for e in kwargs.get("emb_szs", [])]
    return EmbeddingNN(**kwargs)


def _text_arch(name: str) -> Any:
    from deftly.text.models import get_text_arch

    try:
        return get_text_arch(name)
    except ConfigError as e:
        raise ExportError(f"unknown text architecture {name!r}: {e}") from e


@_builtin("text.language_model")
def _language_model(arch: str, vocab_sz: int, config: dict[str, Any], drop_mult: float = 1.0) -> nn.Module:
    from deftly.text.models import get_language_model

    return get_language_model(_text_arch(arch), vocab_sz, config=config, drop_mult=drop_mult)


@_builtin("text.classifier")
def _text_classifier(arch: str, vocab_sz: int, n_class: int, config: dict[str, Any], bptt: int = 70,
                     max_len: int = 20 * 70, drop_mult: float = 1.0, lin_ftrs: list[int] | None = None,
                     ps: list[float] | None = None, pad_idx: int = 1) -> nn.Module:
    from deftly.text.models import get_text_classifier

    return get_text_classifier(_text_arch(arch), vocab_sz, n_class, bptt=bptt, max_len=max_len, config=config,
                               drop_mult=drop_mult, lin_ftrs=lin_ftrs, ps=ps, pad_idx=pad_idx)
