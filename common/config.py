"""Typed configs: dataclass schemas are the source of truth, Hydra composes them at the edge.

Every entry point calls `load_config(Schema, "phase0/train", sys.argv[1:])`:

1. Hydra's compose API reads `configs/<name>.yaml` (which lists the schema first in its `defaults`, then a
   `profile` group: smoke / cpu / full) and applies command-line overrides such as `train.lr=3e-4`.
   Because the schema is a structured config, an unknown key or a value of the wrong type fails here.
2. `OmegaConf.to_object` turns the result into the dataclasses themselves.
3. `validate` walks the tree and calls each dataclass's `check()`, which raises `ConfigError` for
   out-of-range values; the walker prefixes the key path so the message reads `train.lr=-1.0: ...`.

We use the compose API rather than `@hydra.main` so that runs never change the working directory,
never create Hydra's own output folders, and errors print as one clear line.
"""
from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any, Sequence, TypeVar

from omegaconf import OmegaConf

from common.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A config value is invalid. `key` is the dotted path, `allowed` says what would be accepted; `others` holds
    the other keys (and values) of a check that involves several fields, so the message names all of them."""

    def __init__(self, key: str, value: Any, allowed: str, others: dict[str, Any] | None = None):
        self.key, self.value, self.allowed, self.others = key, value, allowed, dict(others or {})
        if self.others:
            pairs = ", ".join(f"{k}={v!r}" for k, v in {key: value, **self.others}.items())
            super().__init__(f"config error: {pairs} do not fit together; {allowed}")
        else:
            super().__init__(f"config error: {key}={value!r} is invalid; {allowed}")


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise ConfigError(key, value, allowed) unless `ok`. Used inside `check()` methods for one field."""
    if not ok:
        raise ConfigError(key, value, allowed)


def require_together(ok: bool, values: dict[str, Any], allowed: str) -> None:
    """A check that relates several fields (`{"sigma_min": 2.0, "sigma_max": 1.0}`): the error names all of them."""
    if not ok:
        (key, value), *rest = values.items()
        raise ConfigError(key, value, allowed, dict(rest))


def choice(key: str, value: Any, options: Sequence[Any]) -> None:
    require(value in options, key, value, f"allowed values: {', '.join(map(str, options))}")


def validate(obj: Any, prefix: str = "") -> None:
    """Depth-first: children are checked before their parent (a parent may rely on valid children)."""
    # Hydra's `+key=value` adds keys the schema lacks and OmegaConf.to_object keeps them as plain
    # attributes, so a typo like `+train.lrr=1` would otherwise be silently ignored.
    known = {f.name for f in dataclasses.fields(obj)}
    for k in getattr(obj, "__dict__", {}):
        require(k in known, prefix + k, "(unknown key)",
                f"not a field of {type(obj).__name__}. Check the spelling; `--cfg` prints every valid key")
    for f in dataclasses.fields(obj):
        child = getattr(obj, f.name)
        if dataclasses.is_dataclass(child):
            validate(child, f"{prefix}{f.name}.")
    if hasattr(obj, "check"):
        try:
            obj.check()
        except ConfigError as e:
            others = {prefix + k: v for k, v in e.others.items()}
            raise ConfigError(prefix + e.key, e.value, e.allowed, others) from None


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


_SCHEMAS: dict[str, str] = {}  # store key -> the class (module.name) that owns it


def load_config(schema: type[T], config_name: str, overrides: Sequence[str] = ()) -> T:
    """Compose `configs/<config_name>.yaml` with `overrides`, type-check it against `schema`, validate.

    Raises ConfigError with a readable message for unknown keys, wrong types and bad values.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    schema_name = f"{schema.__name__}_schema"
    qualified = f"{schema.__module__}.{schema.__qualname__}"
    owner = _SCHEMAS.setdefault(schema_name, qualified)
    if owner != qualified:  # two classes under one store key: a YAML would be checked against the wrong one
        raise TypeError(f"config schema name {schema_name} is taken by {owner}; rename {qualified}")
    ConfigStore.instance().store(name=schema_name, node=schema)
    # Each entry point's folder (configs/phase0/ for "phase0/train") is Hydra's config dir, so that
    # groups are addressed as `profile=smoke`, not `phase0/profile=smoke`.
    path = CONFIG_DIR / f"{config_name}.yaml"
    if not path.exists():
        raise ConfigError("config", config_name, f"no file {path}")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(path.parent), version_base="1.3"):
            cfg = compose(config_name=path.stem, overrides=list(overrides))
        obj = OmegaConf.to_object(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(*_explain(e, path.parent)) from None
    validate(obj)
    return obj


def _explain(e: Exception, config_dir: Path) -> tuple[str, Any, str]:
    """Turn Hydra/OmegaConf's nested exceptions into (key, value, what to do)."""
    missing_group = re.search(r"Could not find '([\w/]+)/([\w.-]+)'", str(e))
    if missing_group:
        group, name = missing_group.groups()
        options = sorted(p.stem for p in (config_dir / group).glob("*.yaml"))
        return group, name, f"no such {group}; allowed values: {', '.join(options)}"
    inner = e
    while inner.__cause__ is not None:
        inner = inner.__cause__
    key = getattr(inner, "full_key", None) or "override"
    msg = str(inner).split("\n")[0]
    if "not in struct" in str(inner) or "Key '" in msg and "not in" in msg:
        return key, "(unknown key)", f"{msg}. Check the spelling; `--cfg` prints every valid key"
    return key, getattr(inner, "value", None) or "(see message)", f"{msg}"


def settings_mismatch(theirs: dict, ours: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested settings dicts, as `key=theirs (this run: ours)`.

    Used to refuse continuing a data set or a run with other settings, naming what differs."""
    out = []
    for k in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(k), ours.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += settings_mismatch(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}={a!r} (this run: {b!r})")
    return out


def load_saved_config(schema: type[T], path: str | Path) -> T:
    """Rebuild a run's typed config from its saved config.yaml.

    Keys the current schema no longer has (a run saved by an older version) are dropped with a warning
    rather than refusing to load the run; missing keys take the schema's defaults.
    """
    import warnings

    saved = _migrate(schema, OmegaConf.to_container(OmegaConf.load(path)))
    base = OmegaConf.structured(schema)

    def prune(node: dict, ref, prefix: str) -> dict:
        out = {}
        for k, v in node.items():
            if k not in ref:
                warnings.warn(f"{path}: ignoring {prefix}{k} (not in {schema.__name__} any more)")
            elif isinstance(v, dict) and OmegaConf.is_dict(ref[k]):
                out[k] = prune(v, ref[k], f"{prefix}{k}.")
            else:
                out[k] = v
        return out

    obj = OmegaConf.to_object(OmegaConf.merge(base, prune(saved, base, "")))
    validate(obj)
    return obj


def _migrate(schema: type, saved: dict) -> dict:
    """A config saved under old key names, moved to today's (the same RENAMED tables as the command line, so a
    renamed key keeps its saved value instead of falling back to the default)."""
    for old in {**RENAMED, **getattr(schema, "RENAMED", {})}:
        *parents, leaf = old.split(".")
        node = saved
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node or isinstance(node[leaf], dict):
            continue  # not saved under the old name (or it is a section, as `run` is)
        renamed = _rename(schema, old, node[leaf])
        if renamed is None:
            continue
        new, value = renamed
        del node[leaf]
        *nparents, nleaf = new.split(".")
        target = saved
        for p in nparents:
            target = target.setdefault(p, {})
        target.setdefault(nleaf, value)
    return saved


def print_config(obj: Any) -> None:
    print(OmegaConf.to_yaml(OmegaConf.structured(obj)))


# Old spellings still accepted (with a note on stderr): old key -> (new key, value map or None).
RENAMED = {
    "root": ("run.root", None),
    "data.root": ("run.root", None),
    "device": ("run.device", None),
    "threads": ("run.threads", None),
    "seed": ("run.seed", None),
    "bf16": ("run.precision", {"true": "bf16", "false": "fp32"}),
    "train.bf16": ("run.precision", {"true": "bf16", "false": "fp32"}),
    "finetune.train.bf16": ("run.precision", {"true": "bf16", "false": "fp32"}),
    "run": ("load", None),  # `run=<folder>` of the commands that load a run (phase 0 eval/sample, phase 1 play)
}


_MISSING = object()


def default_at(schema: type, dotted: str) -> Any:
    """The default value at `dotted` (e.g. `run.root`) of a default-built `schema`; _MISSING if no such key."""
    node = schema()
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(node) or part not in {f.name for f in dataclasses.fields(node)}:
            return _MISSING
        node = getattr(node, part)
    return node


def _renamed(schema: type, override: str) -> str:
    """`root=x` -> `run.root=x` (and the rest of RENAMED, and of the schema's own `RENAMED` class attribute) when
    the schema has the new key and the old one is gone (or is now a group, as `run` is: `run=<folder>` cannot mean
    `run.*`)."""
    key, sep, value = override.partition("=")
    renamed = _rename(schema, key, value) if sep else None
    if renamed is None:
        return override
    new, value = renamed
    print(f"note: `{key}=` is now `{new}=`; the old spelling will go away", file=sys.stderr)
    return f"{new}={value}"


def _rename(schema: type, old: str, value: Any) -> tuple[str, Any] | None:
    """(new key, value) if `old` is a renamed key of `schema` (RENAMED, or the schema's own `RENAMED` class attribute,
    which comes first) that the schema no longer has as a plain key (it may be a section now, as `run` is) and whose
    new key it has; None otherwise. Renames that map values (bf16=true -> precision=bf16) map `value` too."""
    table = {**RENAMED, **getattr(schema, "RENAMED", {})}
    if old not in table:
        return None
    new, values = table[old]
    old_default = default_at(schema, old)
    still_a_key = old_default is not _MISSING and not dataclasses.is_dataclass(old_default)
    if still_a_key or default_at(schema, new) is _MISSING:
        return None
    if values is not None:
        value = values.get(str(value).strip().lower(), value)
    return new, value


_LAST_COMMAND: list[str] = []


def last_command() -> str:
    """The command line the most recent `cli()` call parsed (`python -m <module> <args>`), for provenance."""
    return _LAST_COMMAND[0] if _LAST_COMMAND else " ".join(sys.argv)


def field_comments(cls: type) -> dict[str, str]:
    """What each field of a dataclass means, from its source: the trailing `# comment` of the field's line
    (`lr: float = 1e-4  # peak rate`), else the comment lines right above it."""
    import inspect

    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    out, above = {}, []
    for line in lines:
        m = re.match(r"^    (\w+)\s*:[^#]*?(?:#\s*(.*))?$", line)
        if line.startswith("    #"):
            above.append(line.strip().lstrip("#").strip())
            continue
        if m and m.group(1) in names:
            out[m.group(1)] = m.group(2) or " ".join(above)
        above = []
    return {k: v for k, v in out.items() if v}


def help_lines(schema: Any, prefix: str = "") -> list[str]:
    """`key = default  # meaning` for every leaf key of a config schema (a class, or a default-built instance of
    one, whose nested sections keep the defaults the parent gives them), depth first."""
    node = schema() if isinstance(schema, type) else schema
    comments = {}
    for base in reversed(type(node).__mro__):  # inherited fields (TrainRunConfig from RunConfig) keep their meaning
        if dataclasses.is_dataclass(base):
            comments.update(field_comments(base))
    lines = []
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            lines += help_lines(value, f"{prefix}{f.name}.")
            continue
        text = f"  {prefix}{f.name} = {value!r}"
        if f.name in comments:
            text = f"{text:<48}  # {comments[f.name]}"
        lines.append(text)
    return lines


def section_of(override: str) -> str:
    """The top-level config section a `key=value` override sets (`train` for `+train.lr=1`)."""
    return override.lstrip("+~").partition("=")[0].split(".")[0]


def cli(schema: type[T], config_name: str, argv: Sequence[str] | None = None, doc: str = "",
        profile_group: str = "profile", reads: Sequence[str] = ()) -> T:
    """Parse an entry point's command line: Hydra-style `key=value` overrides, plus `--cfg` and `--help`.

    `profile=<name>` picks a file of `configs/<phase>/<profile_group>/`; entry points of one phase that
    need different profiles (collect vs train) give their own group name, users still type `profile=`.
    `reads`: when a schema is shared by several commands (phase 3's), the top-level sections this command
    reads; overriding another section's key on the command line is an error (it would be silently ignored),
    and `--help` lists only these. Old spellings of renamed keys (RENAMED) are rewritten with a note. On a config
    error prints one clear message and exits with status 2.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    caller = sys._getframe(1).f_globals
    module = caller["__spec__"].name if caller.get("__spec__") is not None else caller.get("__name__", "?")
    _LAST_COMMAND[:] = [" ".join(["python -m", module, *argv])]
    group_dir = CONFIG_DIR / Path(config_name).parent / profile_group
    profiles = sorted(p.stem for p in group_dir.glob("*.yaml"))
    if "--help" in argv or "-h" in argv:
        print(doc.strip() or f"usage: key=value overrides of configs/{config_name}.yaml")
        if profiles:
            print(f"\nprofiles (profile=<name>): {', '.join(profiles)}")
        print("\nkeys (key=value; defaults before any profile; `--cfg` prints the composed config):")
        print("\n".join(line for line in help_lines(schema)
                        if not reads or line.split()[0].split(".")[0] in reads))
        sys.exit(0)
    show = "--cfg" in argv
    overrides = []
    for a in argv:
        if a == "--cfg":
            continue
        if a.startswith("profile=") and profile_group != "profile":
            a = f"{profile_group}={a.split('=', 1)[1]}"
        overrides.append(_renamed(schema, a))
    try:
        chosen = [a.split("=", 1)[1] for a in overrides if a.startswith(f"{profile_group}=")]
        for a in overrides if reads else ():
            key, _, value = a.lstrip("+~").partition("=")
            require(section_of(a) in reads or key == profile_group, key, value, f"`python -m {module}` does not read "
                    f"{section_of(a)}.* (it reads {', '.join(f'{r}.*' for r in reads)})")
        for name in chosen:
            require(name in profiles, "profile", name, f"allowed values: {', '.join(profiles)}")
        obj = load_config(schema, config_name, overrides)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        sys.exit(2)
    if show:
        print_config(obj)
        sys.exit(0)
    return obj
