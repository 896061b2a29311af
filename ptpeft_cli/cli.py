"""`ptpeft <command> [hydra overrides]`.

`train` and `pretrain` go through `@hydra.main` (run dirs, `-m` multirun, launchers). The other
commands only need a composed config, so they use Hydra's compose API and write no run dir.
Every user mistake ends as one line on stderr and exit code 2, before anything is written.
"""

from __future__ import annotations

import copy
import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from omegaconf import DictConfig, OmegaConf

from ptpeft_cli import rundir
from ptpeft_cli.config import conf_dir, register_configs
from ptpeft_cli.config_rules import apply_rates, validate
from ptpeft_cli.errors import UserError
from ptpeft_cli.launch import agree_on_launch_identity, launched_rank, launched_world_size

CONF_DIR = str(conf_dir())
# Commands without run dirs have flat configs of their own (their `task=` is a value, not a group).
COMMAND_CONF_DIR = str(Path(CONF_DIR) / "commands")

COMMANDS: dict[str, str] = {
    "train": "fine-tune a model with a method on a task; evaluate; analyse; log (Hydra multirun: -m)",
    "eval": "re-load a finished run (run_dir=PATH) and recompute its metrics",
    "score": "score an official-format predictions file against official annotations",
    "pretrain": "pre-train the embedded tiny LMM on the synthetic world",
    "analyze": "compare representation spectra of several runs (run_dirs=[A,B] or sweep_dir=S)",
    "report": "build result tables from run dirs (runs=DIR)",
    "plan": "GPU memory, time and GPU-hours of every job a train command would run (offline, in seconds)",
    "tune": "choose each method's rates on the val split (sweeps) and write a rates table (make tune)",
}
# Commands that create run dirs and may sweep; the rest compose a config and return.
HYDRA_APPS = {"train": "train", "pretrain": "pretrain"}
HYDRA_FLAGS_WITHOUT_RUN = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc"}


def one_line(exc: BaseException) -> str:
    """Hydra/OmegaConf messages span lines and tabs; the CLI promises one line."""
    messages = [str(exc)]
    if exc.__cause__ is not None and str(exc.__cause__) not in messages[0]:
        messages.append(str(exc.__cause__))
    lines = [line.strip() for m in messages for line in m.splitlines() if line.strip()]
    # Hydra appends its search path; the user needs the options, not the providers.
    lines = [line for line in lines if not line.startswith(("Config search path", "provider=", "full_key:",
                                                              "object_type=", "reference_type="))]
    return " ".join(lines).replace("\t", " ")


def fail(message: str) -> None:
    print(f"ptpeft: error: {message}", file=sys.stderr)
    sys.exit(UserError.exit_code)


def _expand_sweeps(overrides: list[str]) -> list[list[str]]:
    """All concrete override lists of a multirun, so each job's config is checked up front."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices: list[list[str]] = []
    prefix = {OverrideType.ADD: "+", OverrideType.FORCE_ADD: "++", OverrideType.DEL: "~"}
    for override in parsed:
        if override.is_sweep_override():
            key = prefix.get(override.type, "") + override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(combo) for combo in itertools.product(*choices)] if choices else [[]]


def compose_config(config_name: str, overrides: list[str], config_dir: str = CONF_DIR) -> DictConfig:
    """Compose and validate one config; Hydra/OmegaConf errors become UserError."""
    register_configs()
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
        OmegaConf.resolve(cfg)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - Hydra raises many types; all are user input here
        raise UserError(one_line(exc)) from None
    apply_rates(cfg, overrides)
    validate(cfg)
    return cfg


def sweep_jobs(config_name: str, overrides: list[str]) -> list[list[str]]:
    """The override list of every job a multirun will launch: the command line's sweeps plus the
    `hydra.sweeper.params` a config (e.g. an experiment) declares, the command line winning."""
    try:
        first = _expand_sweeps(overrides)[0]
        register_configs()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            params = compose(config_name=config_name, overrides=first, return_hydra_config=True).hydra.sweeper.params
        given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
        declared = [f"{key}={value}" for key, value in (params or {}).items() if key not in given]
        return _expand_sweeps(overrides + declared)
    except Exception as exc:  # noqa: BLE001 - Hydra raises many types; all are user input here
        raise UserError(one_line(exc)) from None


def job_overrides(args: list[str]) -> list[str]:
    """The overrides that shape a job's config: Hydra's own settings (launcher, run dirs) and flags
    do not, except the search path (user config dirs)."""
    return [a for a in args if not a.startswith("-") and (not a.startswith(("hydra", "+hydra"))
                                                          or a.startswith("hydra.searchpath="))]


def _prevalidate(config_name: str, args: list[str]) -> None:
    """Check every job's config before Hydra creates any directory."""
    if any(a.split("=")[0] in HYDRA_FLAGS_WITHOUT_RUN for a in args):
        return
    overrides = job_overrides(args)
    multirun = "-m" in args or "--multirun" in args
    try:
        combos = sweep_jobs(config_name, overrides) if multirun else _expand_sweeps(overrides)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UserError(one_line(exc)) from None
    for combo in combos:
        compose_config(config_name, combo)


def resume_args(args: list[str]) -> list[str]:
    """`ptpeft train resume=DIR [overrides]` -> the run's own overrides plus the given ones, into
    DIR. Any override that changes the run's config is refused with the keys that differ.
    With `-m`, DIR is a sweep dir: see `sweep_resume_args`."""
    given = [a for a in args if a.startswith("resume=")]
    if not given:
        return args
    run_dir = Path(given[-1].split("=", 1)[1])
    if "-m" in args or "--multirun" in args:
        return sweep_resume_args(run_dir, args)
    saved = rundir.read_config(run_dir)
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    saved_overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.is_file() else []
    saved_overrides = [o for o in saved_overrides if not o.startswith("resume=")]
    extras = [a for a in args if not a.startswith(("resume=", "hydra.run.dir="))]
    composed = compose_config("train", saved_overrides + [a for a in extras if not a.startswith("-")])
    differ = rundir.config_differences(saved, composed)
    if differ:
        raise UserError(f"resume={run_dir}: the config would differ from the run's in {', '.join(differ[:10])}; "
                        "resume with the run's own config (drop those overrides)")
    return [*saved_overrides, *extras, f"resume={run_dir}", f"hydra.run.dir={run_dir}"]


def sweep_resume_args(sweep_dir: Path, args: list[str]) -> list[str]:
    """`ptpeft train -m resume=SWEEP_DIR` -> the sweep's own command line (its overrides and its
    launcher, from Hydra's multirun.yaml) into the same dir, with `resume_jobs=true`: Hydra numbers
    the jobs as before, a finished job is kept, a stopped one resumes from its last checkpoint, a
    job that never started trains."""
    saved = sweep_dir / "multirun.yaml"
    if not saved.is_file():
        raise UserError(f"resume={sweep_dir} with -m needs a sweep dir (one with multirun.yaml, written by "
                        "`ptpeft train -m`); a single run is resumed without -m")
    extras = [a for a in args if not a.startswith("resume=") and a not in ("-m", "--multirun")]
    if extras:
        raise UserError(f"resume={sweep_dir}: a sweep resumes with its own command line; drop {' '.join(extras)}")
    overrides = OmegaConf.load(saved).hydra.overrides
    launcher = [str(o) for o in overrides.hydra if not str(o).startswith(("hydra.sweep.dir=", "hydra.mode="))]
    return ["-m", *[str(o) for o in overrides.task], *launcher, f"hydra.sweep.dir={sweep_dir}", "resume_jobs=true"]


def _rank_overrides() -> list[str]:
    """Under torchrun / accelerate launch every rank runs this CLI: they agree on one run dir, and
    only rank 0 lets Hydra write into it (its config copy and its log)."""
    if launched_world_size() <= 1:
        return []
    agree_on_launch_identity()
    if launched_rank() == 0:
        return []
    return ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]


def _run_hydra_app(command: str, args: list[str]) -> None:
    from ptpeft_cli.commands import pretrain_entry, train_entry

    entry: Callable[[DictConfig], object] = {"train": train_entry, "pretrain": pretrain_entry}[command]
    register_configs()
    if command == "train":
        args = resume_args(args) + _rank_overrides()
    _prevalidate(HYDRA_APPS[command], args)
    app = hydra.main(config_path=CONF_DIR, config_name=HYDRA_APPS[command], version_base="1.3")(entry)
    sys.argv = [f"ptpeft {command}", *args]
    GlobalHydra.instance().clear()  # callable twice in one process (tests, notebooks)
    try:
        app()
    finally:
        GlobalHydra.instance().clear()


def _run_plain(command: str, args: list[str]) -> None:
    from ptpeft_cli import commands

    if any(a in ("--help", "-h") for a in args):
        print(f"usage: ptpeft {command} key=value ...\n\n{COMMANDS[command]}")
        print(OmegaConf.to_yaml(OmegaConf.load(Path(COMMAND_CONF_DIR) / f"{command}.yaml")))
        return
    if command == "analyze":
        args = _gather_list(args, "run_dir", "run_dirs")
    if command == "report":
        args = _gather_list(args, "runs", "runs")
    if command == "plan":
        _run_plan(args)
        return
    cfg = compose_config(command, args, COMMAND_CONF_DIR)
    getattr(commands, f"{command}_command")(cfg)


def plan_inputs(args: list[str]) -> tuple[DictConfig, list[tuple[list[str], DictConfig]], list[str]]:
    """`ptpeft plan ARGS` -> (the planner's own options, every job's (overrides, train config) as
    `ptpeft train -m ARGS` would run them, the experiment's sweep included, the train overrides).
    Composed without Hydra creating anything; Hydra's own settings (launcher, dirs) are dropped."""
    own = set(OmegaConf.load(Path(COMMAND_CONF_DIR) / "plan.yaml"))
    options = [a for a in args if a.split("=", 1)[0] in own]
    overrides = job_overrides([a for a in args if a not in options])
    cfg = compose_config("plan", options, COMMAND_CONF_DIR)
    return cfg, [(job, config) for job, config in _compose_jobs(sweep_jobs("train", overrides))], overrides


def _compose_jobs(jobs: list[list[str]]) -> Iterator[tuple[list[str], DictConfig]]:
    """Every job's train config. Composing takes Hydra a good fraction of a second, and a sweep's
    seeds change no value but `trainer.seed` itself (tests/planning pins it), so jobs that differ
    only in their seed are composed once and copied."""
    composed: dict[tuple[str, ...], DictConfig] = {}
    for job in jobs:
        others = tuple(o for o in job if not o.startswith("trainer.seed="))
        seeds = [o.split("=", 1)[1] for o in job if o.startswith("trainer.seed=")]
        if others in composed and len(seeds) == 1 and seeds[0].isdigit():
            config = copy.deepcopy(composed[others])
            config.trainer.seed = int(seeds[0])
        else:
            config = compose_config("train", job)
            composed.setdefault(others, config)
        yield job, config


def _run_plan(args: list[str]) -> None:
    from ptpeft_cli import commands

    options, jobs, overrides = plan_inputs(args)
    commands.plan_command(options, jobs, " ".join(overrides))


def _gather_list(args: list[str], repeated: str, target: str) -> list[str]:
    """`run_dir=A run_dir=B` (the natural way to name several paths) -> `run_dirs=['A','B']`."""
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{repeated}=") and not a.split("=", 1)[1].startswith("[")]
    rest = [a for a in args if a not in {f"{repeated}={v}" for v in values}]
    return rest + ([f"{target}=[{','.join(repr(v) for v in values)}]"] if values else [])


def print_help() -> None:
    print("usage: ptpeft <command> [hydra overrides]\n\ncommands:")
    for name, text in COMMANDS.items():
        print(f"  {name:<9} {text}")
    print("\n`ptpeft <command> --help` shows the command's options (Hydra groups for train).")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print_help()
        return
    command, args = argv[0], argv[1:]
    if command not in COMMANDS:
        fail(f"unknown command {command!r}; choose one of: {', '.join(COMMANDS)}")
    try:
        if command in HYDRA_APPS:
            _run_hydra_app(command, args)
        else:
            _run_plain(command, args)
    except UserError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()
