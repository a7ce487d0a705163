"""The command line of every Hydra entry point, prepared before ``@hydra.main`` reads it (public Hydra API only),
and Hydra's errors as one line (exit code 2). :func:`run_app`, in order:

* ``-h``/``--help`` prints the tool's own short usage (:func:`usage_text`), not Hydra's dump of every config
  group (``--hydra-help`` and ``--cfg job`` still show Hydra's help and the composed config).
* Hydra's flags (:data:`HYDRA_FLAGS`) move in front of the overrides, so ``a=1 --config-dir X b=2`` parses.
* Each override is parsed with Hydra's grammar; one it cannot read (an apostrophe, a non-ASCII letter,
  parentheses, an unquoted comma) is refused in one line that shows it quoted (:func:`quoting_hint`).
* The CLI's own options (``seed``, ``+num_steps``, ...) are set by ``key=v``, ``+key=v`` or ``++key=v`` whether
  the config has the key or not; any other top-level ``+key`` that is no config group is refused (a typo).
* ``model.pretransform.ae_config.<x>`` (the original's spelling) names ``model.pretransform.autoencoder.<x>``.
* ``sys.argv`` holds the prepared argv while the app runs: ``hydra.main`` reads nothing else, and Lightning starts
  the other DDP ranks with it plus overrides of its own (which prepare again unchanged).
* Hydra's errors (no such ``--config-name``, an unknown key, ``+key`` for a key that exists) become one line
  naming the option and what was expected (:func:`describe_hydra_error`, called by the boundary).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from mgeldm.cli.boundary import Messages, user_boundary
from mgeldm.config import CONFIG_DIR
from mgeldm.errors import UserError

AE_ALIAS = ("model.pretransform.ae_config", "model.pretransform.autoencoder")
# Hydra's own flags (hydra-core 1.3, as ``--hydra-help`` lists them) and what each takes: 0 nothing, 1 a value,
# a tuple an optional value among these. tests/cli/test_hydra_args.py checks the table against Hydra's parser.
HYDRA_FLAGS: dict[str, int | tuple[str, ...]] = {
    **dict.fromkeys(
        (
            "-h",
            "--help",
            "--hydra-help",
            "--version",
            "--resolve",
            "-r",
            "--run",
            "-m",
            "--multirun",
            "-sc",
            "--shell-completion",
        ),
        0,
    ),
    **dict.fromkeys(
        (
            "-c",
            "--cfg",
            "-p",
            "--package",
            "-cp",
            "--config-path",
            "-cn",
            "--config-name",
            "-cd",
            "--config-dir",
            "--experimental-rerun",
        ),
        1,
    ),
    **dict.fromkeys(("-i", "--info"), ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")),
}


def hydra_quote(value: str) -> str:
    """``value`` quoted for Hydra's grammar, reading back as exactly ``value``: in single quotes unless it holds one
    and no double quote. Inside quotes Hydra reads a backslash before the quote as an escape and keeps any other,
    so backslashes are doubled only there and at the end (scripts/hydra_quote.sh: same rule, single quotes)."""
    q = '"' if "'" in value and '"' not in value else "'"
    out = re.sub(rf"\\+(?={q}|$)", lambda m: m.group(0) * 2, value)
    return q + out.replace(q, "\\" + q) + q


def quoting_hint(override: str) -> str:
    """``key=value`` with the value (outer quotes removed: what the user most likely meant) quoted for Hydra and
    the whole argument for a shell (in double quotes when it holds a single quote, which reads better)."""
    key, _, raw = override.partition("=")
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1]
    arg = f"{key}={hydra_quote(raw)}"
    return '"' + re.sub(r'(["\\$`])', r"\\\1", arg) + '"' if "'" in arg else shlex.quote(arg)


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(Hydra flags with their values, overrides), each in the order given; flags may sit anywhere."""
    front, overrides, items = [], [], list(argv)
    while items:
        arg = items.pop(0)
        name, eq, _ = arg.partition("=")
        if not arg.startswith("-"):
            overrides.append(arg)
            continue
        if name not in HYDRA_FLAGS:
            raise UserError(
                f"{arg}: unknown flag; expected key=value overrides or Hydra's flags "
                "(--config-name NAME, --config-dir DIR, --cfg job, --help, ...)"
            )
        takes = HYDRA_FLAGS[name]
        if isinstance(takes, tuple):  # --info [WHAT]: the next argument only when it is one of the choices
            takes = int(bool(items) and items[0] in takes)
        elif eq:
            takes = 0
        if takes and not items:
            raise UserError(f"{arg}: expects a value (e.g. {arg} NAME)")
        front += [arg, *(items.pop(0) for _ in range(takes))]
    return front, overrides


def config_dirs(argv: Sequence[str], config_dir: str | os.PathLike = CONFIG_DIR) -> list[Path]:
    """The CLI's own config folder and those named by ``--config-dir`` in ``argv`` (where it parses)."""
    try:
        front, _ = split_argv(argv)
    except UserError:  # a malformed flag, which prepare_argv refuses
        front = []
    named = [
        value if eq else following
        for arg, following in zip(front, [*front[1:], ""])
        for name, eq, value in [arg.partition("=")]
        if name in ("--config-dir", "-cd")
    ]
    return [Path(config_dir), *(Path(d).expanduser() for d in named)]


def prepare_argv(
    argv: Sequence[str], *, options: Iterable[str] = (), config_dir: str | os.PathLike = CONFIG_DIR
) -> list[str]:
    """``argv`` (without the program) as Hydra should see it: flags first, overrides checked and rewritten."""
    front, overrides = split_argv(argv)
    return front + prepare_overrides(
        overrides,
        options=options,
        config_dirs=config_dirs(argv, config_dir),
        multirun=bool({"-m", "--multirun"} & set(front)),
    )


def _parse(override: str, multirun: bool):
    """Hydra's parse of one override, or a one-line UserError that shows how to quote it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides([override])[0]
    except OverrideParseException:
        if "=" not in override:
            raise UserError(f"{override}: cannot be read as an override; expected key=value") from None
        raise UserError(
            f"{override}: Hydra cannot read this value; quote it for Hydra, e.g. {quoting_hint(override)} "
            "(see https://hydra.cc/docs/advanced/override_grammar/basic)"
        ) from None
    if parsed.is_sweep_override() and not multirun:
        raise UserError(
            f"{override}: a comma makes this a list of runs; quote a value that holds a comma, "
            f"e.g. {quoting_hint(override)}, or write a list as key=[a,b]"
        )
    return parsed


def _searchpath_dirs(parsed) -> list[Path]:
    """The folders a ``hydra.searchpath=[file://...]`` override adds (they may hold config groups too)."""
    value = parsed.value() if parsed.key_or_group == "hydra.searchpath" else []
    entries = value if isinstance(value, list) else [value]
    return [Path(str(e)[len("file://") :]) for e in entries if str(e).startswith("file://")]


def prepare_overrides(
    overrides: Sequence[str], *, options: Iterable[str], config_dirs: Iterable[Path], multirun: bool = False
) -> list[str]:
    """Check the syntax of every override and rewrite them for Hydra (see the module docstring)."""
    options = set(options)
    parsed = [_parse(o, multirun) for o in overrides]
    dirs = [Path(d) for d in [*config_dirs, *(d for p in parsed for d in _searchpath_dirs(p))]]
    old, new = AE_ALIAS
    out = []
    for text, p in zip(overrides, parsed):
        text = re.sub(rf"^(~|\+\+|\+)?{re.escape(old)}(?=[.=@~]|$)", rf"\g<1>{new}", text)
        key = p.key_or_group
        top = key.split(".", 1)[0]
        group = "/" in top or top == "hydra" or any((d / top).is_dir() for d in dirs)
        if p.package is None and not p.is_delete() and ("." in key or not group):  # a key, not a config group
            if top in options:
                text = "++" + text.lstrip("+")
            elif p.is_add() and "." not in key:
                raise UserError(
                    f"+{key}: unknown option; expected one of {', '.join(sorted(options)) or 'none'} "
                    f"(a key the config already has is set without +: {key}=VALUE)"
                )
        out.append(text)
    return out


def describe_hydra_error(exc: BaseException, *, config_dirs: Iterable[Path] = (CONFIG_DIR,)) -> str:
    """One line for an error Hydra or OmegaConf raised while composing or resolving the config."""
    text = str(exc)
    if exc.__cause__ is not None and "not in struct" in str(exc.__cause__):
        text += "\n" + str(exc.__cause__)
    if primary := re.search(r"Cannot find primary config '([^']*)'", text):
        names = sorted({p.stem for d in map(Path, config_dirs) if d.is_dir() for p in d.glob("*.yaml")})
        return (
            f"--config-name {primary.group(1)}: no such config; expected one of {', '.join(names)} "
            "(or a .yaml in --config-dir DIR)"
        )
    if key := re.search(r"Could not override '([^']*)'", text):
        return f"{key[1]}: no such key in this config; check the spelling (or add a new key with +{key[1]}=VALUE)"
    if key := re.search(r"An item is already at '([^']*)'", text):
        return f"+{key[1]}: the config already has {key[1]}; set it with {key[1]}=VALUE (or ++{key[1]}=VALUE)"
    lines = [ln.strip() for ln in text.split("Config search path:")[0].splitlines() if ln.strip()]
    return re.sub(r":; ", ": ", "; ".join(lines))[:600] or type(exc).__name__


def plain_config(cfg) -> dict:
    """The composed config as plain containers (interpolations resolved): what every CLI's ``run`` reads."""
    from omegaconf import OmegaConf

    # Expected with our setup: the frozen AE is in eval mode; checkpoints hold post-step weights.
    for message in (
        ".*module\\(s\\) in eval mode.*",
        ".*pre-optimization state.*",
        ".*set_vital.*",
        ".*LeafSpec.*",
        ".*litlogger.*",
    ):
        warnings.filterwarnings("ignore", message=message)
    return OmegaConf.to_container(cfg, resolve=True)


def usage_text(
    synopsis: str, summary: str, options: Sequence[tuple[str, str]], examples: Sequence[str], notes: Sequence[str] = ()
) -> str:
    """A short --help page: the synopsis, what the program does, one line per option, notes, examples."""
    width = min(30, max(len(name) for name, _ in options) + 2)
    lines = [f"usage: {synopsis}", "", summary, "", "options (key=value, +key=value and ++key=value are the same):"]
    for name, text in options:
        pad = name.ljust(width) if len(name) < width else name + "\n" + " " * (width + 2)
        lines.append(f"  {pad}{text}")
    lines += [
        "",
        *notes,
        "Hydra flags: --config-name NAME (a configs/NAME.yaml), --config-dir DIR, --cfg job (print "
        "the composed config), --hydra-help.",
        "",
        "examples:",
        *(f"  {e}" for e in examples),
    ]
    return "\n".join(lines) + "\n"


@contextmanager
def _as_hydra_reads_it(argv: list[str]):
    """``sys.argv[1:] = argv`` (all that ``hydra.main`` reads) and ``HYDRA_FULL_ERROR=1`` (without it Hydra prints
    a multi-line report and exits 1; with it the exception reaches the boundary); both restored afterwards."""
    saved_argv, saved_env = sys.argv[1:], os.environ.get("HYDRA_FULL_ERROR")
    sys.argv[1:], os.environ["HYDRA_FULL_ERROR"] = argv, "1"
    try:
        yield
    finally:
        sys.argv[1:] = saved_argv
        os.environ.pop("HYDRA_FULL_ERROR", None)
        if saved_env is not None:
            os.environ["HYDRA_FULL_ERROR"] = saved_env


def run_app(
    app: Callable[[], None],
    prog: str,
    *,
    options: Iterable[str] = (),
    config_dir: str | os.PathLike = CONFIG_DIR,
    usage: str | Callable[[], str] | None = None,
    messages: Messages = Messages(),
) -> None:
    """Run the ``@hydra.main`` function ``app`` on ``sys.argv`` behind :func:`mgeldm.cli.boundary.user_boundary`;
    ``-h``/``--help`` prints ``usage`` (text, or a function returning it) and exits 0."""
    argv = sys.argv[1:]
    if usage is not None and any(arg in ("-h", "--help") for arg in argv):
        print(usage() if callable(usage) else usage, end="", flush=True)
        sys.exit(0)
    with user_boundary(prog, messages, config_dirs=config_dirs(argv, config_dir)):
        with _as_hydra_reads_it(prepare_argv(argv, options=options, config_dir=config_dir)):
            app()


class HydraCli(NamedTuple):
    """One Hydra tool: ``main()`` runs on ``sys.argv``, ``run_config(cfg)`` on a composed config (both guarded)."""

    main: Callable[[], None]
    run_config: Callable[[Any], None]


def hydra_cli(
    prog: str,
    run: Callable[[dict], Any],
    *,
    config_name: str,
    options: Iterable[str],
    usage: Callable[[], str],
    messages: Messages = Messages(),
) -> HydraCli:
    """The entry point of a tool that runs ``run(plain config)`` on ``configs/<config_name>.yaml`` composed with
    the command line (``--config-name`` picks another config, ``--config-dir`` adds a folder of them)."""
    import hydra

    def run_config(cfg) -> None:
        with user_boundary(prog, messages):
            run(plain_config(cfg) if not isinstance(cfg, dict) else cfg)

    app = hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base=None)(run_config)
    return HydraCli(partial(run_app, app, prog, options=options, usage=usage, messages=messages), run_config)
