"""The command-line boundary every entry point shares: argv and overrides before Hydra sees them, and
Hydra's own errors turned into one line (exit code 2).

What :func:`run_app` does, in order:

* **argv order.** Hydra's flags (``--config-dir X``, ``--config-name=Y``, ``-m`` ...) move in front of the
  overrides, so ``python train_dit.py a=1 --config-dir X b=2`` parses. Lightning starts the other DDP ranks
  with ``sys.argv`` plus overrides of its own appended; ``sys.argv`` is rewritten in place, so they parse too.
* **override syntax.** Each override is parsed with Hydra's grammar first; a value it cannot read (an
  apostrophe, a non-ASCII letter, parentheses, an unquoted comma) is refused in one line that shows the
  value quoted the way Hydra reads it.
* **the CLI's own options** (``seed``, ``ckpt_path``, ``+num_steps``, ...): ``key=v``, ``+key=v`` and
  ``++key=v`` all set them, whether the chosen config has the key or not (written ``++key=v`` for Hydra).
  A top-level ``+key`` that is neither an option nor a config group is refused (a typo such as ``+num_step``).
* **the original's spellings**: ``model.pretransform.ae_config.<x>`` names ``model.pretransform.autoencoder.<x>``.
* **Hydra's errors** (no such ``--config-name``, an unknown key, ``+key`` for a key that exists) become one
  line naming the option and what was expected (:func:`describe_hydra_error`, called by the boundary).
* **--help / -h** prints the entry point's own short usage (its options, their defaults, examples; see
  :func:`usage_text`) instead of Hydra's dump of every config group; ``--hydra-help`` and ``--cfg job`` still
  show Hydra's help and the composed config.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgeldm.cli.boundary import Messages, user_boundary
from mgeldm.config import CONFIG_DIR  # re-exported for the entry points
from mgeldm.errors import UserError
AE_ALIAS = ("model.pretransform.ae_config", "model.pretransform.autoencoder")
_QUOTE_HINT = "see https://hydra.cc/docs/advanced/override_grammar/basic"


# --------------------------------------------------------------------------------------------- quoting


def hydra_quote(value: str) -> str:
    """``value`` as a quoted Hydra override value that reads back as exactly ``value``.

    Single quotes unless the value holds one (then double quotes, unless it holds both). Inside quotes Hydra
    reads a backslash before the quote character as an escape and keeps every other backslash as it is, so
    the quote character is escaped and backslashes are doubled only before it or at the end.
    (scripts/hydra_quote.sh applies the same rule in bash, always with single quotes.)
    """
    q = '"' if "'" in value and '"' not in value else "'"
    out = re.sub(rf"\\+(?={q}|$)", lambda m: m.group(0) * 2, value)
    return q + out.replace(q, "\\" + q) + q


def _shell_word(arg: str) -> str:
    """``arg`` as one shell word, preferring double quotes when it holds single quotes (readable hints)."""
    if "'" not in arg:
        return shlex.quote(arg)
    return '"' + re.sub(r'(["\\$`])', r"\\\1", arg) + '"'


def _intended_value(raw: str) -> str:
    """The value a user most likely meant: an override's text after ``=``, outer quotes removed."""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


def quoting_hint(override: str) -> str:
    """``key=value`` rewritten with the value quoted for Hydra and the whole argument quoted for a shell."""
    key, _, raw = override.partition("=")
    return _shell_word(f"{key}={hydra_quote(_intended_value(raw))}")


# --------------------------------------------------------------------------------------------- argv


def _hydra_flags() -> dict[str, object]:
    from hydra._internal.utils import get_args_parser

    return dict(get_args_parser()._option_string_actions)


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(Hydra flags with their values, overrides), each in the order given; flags may sit anywhere."""
    flags = _hydra_flags()
    front: list[str] = []
    overrides: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        arg = items[i]
        name = arg.split("=", 1)[0]
        action = flags.get(name) if arg.startswith("-") else None
        if action is None:
            if arg.startswith("-"):
                raise UserError(f"{arg}: unknown flag; expected key=value overrides or Hydra's flags "
                                "(--config-name NAME, --config-dir DIR, --cfg job, --help, ...)")
            overrides.append(arg)
            i += 1
            continue
        nargs = getattr(action, "nargs", None)
        takes = 0 if nargs == 0 or "=" in arg else 1
        if nargs == "?":
            choices = getattr(action, "choices", None) or ()
            takes = 1 if i + 1 < len(items) and items[i + 1] in choices else 0
        if takes and i + 1 >= len(items):
            raise UserError(f"{arg}: expects a value (e.g. {arg} NAME)")
        front.extend(items[i:i + 1 + takes])
        i += 1 + takes
    return front, overrides


def _flag_values(front: Sequence[str], *names: str) -> list[str]:
    out = []
    for i, arg in enumerate(front):
        name, eq, value = arg.partition("=")
        if name in names:
            out.append(value if eq else (front[i + 1] if i + 1 < len(front) else ""))
    return out


# --------------------------------------------------------------------------------------------- overrides


def _parse(override: str, multirun: bool):
    """Hydra's parse of one override, or a one-line UserError that shows how to quote it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides([override])[0]
    except OverrideParseException:
        if "=" not in override:
            raise UserError(f"{override}: cannot be read as an override; expected key=value") from None
        raise UserError(f"{override}: Hydra cannot read this value; quote it for Hydra, e.g. "
                        f"{quoting_hint(override)} ({_QUOTE_HINT})") from None
    if parsed.is_sweep_override() and not multirun:
        raise UserError(f"{override}: a comma makes this a list of runs; quote a value that holds a comma, "
                        f"e.g. {quoting_hint(override)}, or write a list as key=[a,b]")
    return parsed


def _is_group(key: str, config_dirs: Iterable[Path]) -> bool:
    if "/" in key or key == "hydra":
        return True
    return any((Path(d) / key).is_dir() for d in config_dirs)


def _searchpath_dirs(parsed) -> list[Path]:
    if parsed.key_or_group != "hydra.searchpath":
        return []
    value = parsed.value()
    entries = value if isinstance(value, list) else [value]
    return [Path(str(e)[len("file://"):]) for e in entries if str(e).startswith("file://")]


def _apply_alias(override: str) -> str:
    old, new = AE_ALIAS
    match = re.match(r"^(~|\+\+|\+)?([^=@~]+)", override)
    if match and (match.group(2) == old or match.group(2).startswith(old + ".")):
        start = match.start(2)
        return override[:start] + new + override[start + len(old):]
    return override


def prepare_overrides(overrides: Sequence[str], *, options: Iterable[str], config_dirs: Iterable[Path],
                      multirun: bool = False) -> list[str]:
    """Check the syntax of every override and rewrite them for Hydra (see the module docstring)."""
    options = set(options)
    parsed = [_parse(o, multirun) for o in overrides]
    dirs = [*config_dirs, *(d for p in parsed for d in _searchpath_dirs(p))]
    out = []
    for text, p in zip(overrides, parsed):
        text = _apply_alias(text)
        key = p.key_or_group
        top = key.split(".", 1)[0]
        if p.package is not None or p.is_delete() or ("." not in key and _is_group(top, dirs)):
            out.append(text)
            continue
        if top in options:
            out.append("++" + text.lstrip("+"))
            continue
        if p.is_add() and "." not in key:
            expected = ", ".join(sorted(options)) or "none"
            raise UserError(f"+{key}: unknown option; expected one of {expected} (a key the config already "
                            f"has is set without +: {key}=VALUE)")
        out.append(text)
    return out


def config_dirs(argv: Sequence[str], config_dir: str | os.PathLike = CONFIG_DIR) -> list[Path]:
    """The CLI's own config folder and those named by ``--config-dir`` in ``argv``."""
    front, _ = split_argv(argv)
    return [Path(config_dir), *(Path(d).expanduser() for d in _flag_values(front, "--config-dir", "-cd"))]


def prepare_argv(argv: Sequence[str], *, options: Iterable[str] = (),
                 config_dir: str | os.PathLike = CONFIG_DIR) -> list[str]:
    """``argv`` (without the program) as Hydra should see it: flags first, overrides checked and rewritten."""
    front, overrides = split_argv(argv)
    multirun = any(a in ("-m", "--multirun") for a in front)
    return front + prepare_overrides(overrides, options=options, config_dirs=config_dirs(argv, config_dir),
                                     multirun=multirun)


# --------------------------------------------------------------------------------------------- Hydra's errors


def _config_names(dirs: Iterable[Path]) -> list[str]:
    names = set()
    for d in dirs:
        if Path(d).is_dir():
            names.update(p.stem for p in Path(d).glob("*.yaml"))
    return sorted(names)


def describe_hydra_error(exc: BaseException, *, config_dirs: Iterable[Path] = (CONFIG_DIR,)) -> str:
    """One line for an error Hydra or OmegaConf raised while composing or resolving the config."""
    text = str(exc)
    if exc.__cause__ is not None and "not in struct" in str(exc.__cause__):
        text += "\n" + str(exc.__cause__)
    primary = re.search(r"Cannot find primary config '([^']*)'", text)
    if primary:
        names = _config_names(config_dirs)
        return (f"--config-name {primary.group(1)}: no such config; expected one of {', '.join(names)} "
                "(or a .yaml in --config-dir DIR)")
    unknown = re.search(r"Could not override '([^']*)'", text)
    if unknown:
        key = unknown.group(1)
        return (f"{key}: no such key in this config; check the spelling (or add a new key with +{key}=VALUE)")
    exists = re.search(r"An item is already at '([^']*)'", text)
    if exists:
        key = exists.group(1)
        return f"+{key}: the config already has {key}; set it with {key}=VALUE (or ++{key}=VALUE)"
    lines = [ln.strip() for ln in text.split("Config search path:")[0].splitlines() if ln.strip()]
    return re.sub(r":; ", ": ", "; ".join(lines))[:600] or type(exc).__name__


@contextmanager
def _hydra_raises():
    """Hydra prints a multi-line report and exits 1 on its errors unless HYDRA_FULL_ERROR is set; with it
    set, the exception reaches the boundary and becomes one line."""
    old = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = old


def plain_config(cfg) -> dict:
    """The composed config as plain containers (interpolations resolved): what every CLI's ``run`` reads."""
    import warnings

    from omegaconf import OmegaConf

    # Expected with our setup: the frozen AE is in eval mode; checkpoints hold post-step weights.
    for message in (".*module\\(s\\) in eval mode.*", ".*pre-optimization state.*", ".*set_vital.*", ".*LeafSpec.*",
                    ".*litlogger.*"):
        warnings.filterwarnings("ignore", message=message)
    return OmegaConf.to_container(cfg, resolve=True)


HELP_FLAGS = ("-h", "--help")
_HYDRA_HELP = ("Hydra flags: --config-name NAME (a configs/NAME.yaml), --config-dir DIR, --cfg job (print the "
               "composed config), --hydra-help.")


def usage_text(synopsis: str, summary: str, options: Sequence[tuple[str, str]], examples: Sequence[str],
               notes: Sequence[str] = ()) -> str:
    """A short --help page: the synopsis, what the program does, one line per option, notes, examples."""
    width = min(30, max(len(name) for name, _ in options) + 2)
    lines = [f"usage: {synopsis}", "", summary, "", "options (key=value, +key=value and ++key=value are the same):"]
    for name, text in options:
        pad = name.ljust(width) if len(name) < width else name + "\n" + " " * (width + 2)
        lines.append(f"  {pad}{text}")
    lines += ["", *notes, _HYDRA_HELP, "", "examples:", *(f"  {e}" for e in examples)]
    return "\n".join(lines) + "\n"


def _config_dirs_or_default(argv: Sequence[str], config_dir: str | os.PathLike) -> list[Path]:
    try:
        return config_dirs(argv, config_dir)
    except UserError:  # a malformed flag: refused again, in one line, by prepare_argv
        return [Path(config_dir)]


def run_app(app: Callable[[], None], prog: str, *, options: Iterable[str] = (),
            config_dir: str | os.PathLike = CONFIG_DIR, usage: str | Callable[[], str] | None = None,
            messages: Messages = Messages()) -> None:
    """Run the ``@hydra.main`` function ``app`` on ``sys.argv`` behind the shared boundary
    (:func:`mgeldm.cli.boundary.user_boundary`); ``-h``/``--help`` prints ``usage`` (text, or a function
    returning it) and exits 0."""
    if usage is not None and any(arg in HELP_FLAGS for arg in sys.argv[1:]):
        print(usage() if callable(usage) else usage, end="", flush=True)
        sys.exit(0)
    with user_boundary(prog, messages, config_dirs=_config_dirs_or_default(sys.argv[1:], config_dir)):
        sys.argv[1:] = prepare_argv(sys.argv[1:], options=options, config_dir=config_dir)
        with _hydra_raises():
            app()


@dataclass(frozen=True)
class HydraCli:
    """One Hydra command-line tool: ``main()`` reads ``sys.argv``, ``run_config(cfg)`` runs a composed config;
    both behind the boundary."""

    main: Callable[[], None]
    run_config: Callable[[Any], None]


def hydra_cli(prog: str, run: Callable[[dict], Any], *, config_name: str, options: Iterable[str],
              usage: Callable[[], str], messages: Messages = Messages()) -> HydraCli:
    """The entry point of a tool that runs ``run(plain config)`` on ``configs/<config_name>.yaml`` composed with
    the command line (``--config-name`` picks another config, ``--config-dir`` adds a folder of them)."""
    import hydra

    def run_config(cfg) -> None:
        with user_boundary(prog, messages):
            run(plain_config(cfg) if not isinstance(cfg, dict) else cfg)

    app = hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base=None)(run_config)

    def main() -> None:
        run_app(app, prog, options=options, usage=usage, messages=messages)

    return HydraCli(main, run_config)
