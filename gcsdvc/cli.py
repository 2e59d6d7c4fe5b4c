"""The ``gcsdvc`` command line: parse, call the library, print, translate errors.

Exit codes are defined in :mod:`gcsdvc.errors`.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from gcsdvc import collector
from gcsdvc.errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    GcsdvcError,
    ManifestError,
    NotARepoError,
    local_fault,
)
from gcsdvc.manifest import Manifest, init_hint, load_manifest, manifest_path
from gcsdvc.progress import DEFAULT_INTERVAL
from gcsdvc.render import amount, cells, elapsed, one_line, pad, quote, rel, status_lines

if TYPE_CHECKING:
    from gcsdvc.authoring import Added
    from gcsdvc.progress import Tally
    from gcsdvc.storage import Storage
    from gcsdvc.sync import SyncResult

F = TypeVar("F", bound=Callable[..., Any])

MANIFEST_ENV = "GCSDVC_MANIFEST"


def _complete_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Experiment names of the manifest, for shell completion (nothing on any error)."""
    manifest_file = ctx.params.get("manifest_file")
    try:
        names = load_manifest(manifest_file).names
    except Exception:
        return []
    return [name for name in names if name.startswith(incomplete)]


manifest_option = click.option(
    "--manifest",
    "-m",
    "manifest_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar=MANIFEST_ENV,
    show_envvar=True,
    is_eager=True,  # read before NAMES, so completion uses the same manifest
    help="Manifest file [default: params.yaml at the root of the DVC repository].",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (one documented schema per command)."
)
names_argument = click.argument("names", nargs=-1, shell_complete=_complete_names)
jobs_option = click.option(
    "-j", "--jobs", type=click.IntRange(1, 256), default=16, show_default=True,
    help="Parallel downloads.",
)  # fmt: skip
progress_option = click.option(
    "--progress-interval", type=click.FloatRange(min=0.1), default=DEFAULT_INTERVAL,
    show_default=True, metavar="SECONDS",
    help="Seconds between progress lines when standard error is not a terminal.",
)  # fmt: skip


@dataclass
class Options:
    """The options every command takes before or after its name, on ``ctx.obj``.

    ``gcsdvc -q sync`` and ``gcsdvc sync -q`` set the same field; a command's own
    ``--json``/``-m`` are merged in before it runs, and it is passed the object
    (``pass_options``; see :func:`command`).
    """

    quiet: bool = False
    verbose: bool = False
    debug: bool = False
    json: bool = False
    manifest: Path | None = None  # -m given before the command name
    storages: list[Storage] = field(default_factory=list)  # for -v's retry count
    printed: bool = False  # a JSON document is out: an error after it gets no second one


pass_options = click.make_pass_decorator(Options, ensure=True)


def _options() -> Options:
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(Options) if ctx is not None else None
    return found if found is not None else Options()


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value and param.name:
        setattr(ctx.ensure_object(Options), param.name, value)


_QUIET = click.option(
    "-q", "--quiet", is_flag=True, expose_value=False, callback=_remember,
    help="Print only errors.",
)  # fmt: skip
_VERBOSE = click.option(
    "-v", "--verbose", is_flag=True, expose_value=False, callback=_remember,
    help="Print more detail (per-file decisions, retries, timings).",
)  # fmt: skip
_DEBUG = click.option(
    "--debug", is_flag=True, expose_value=False, callback=_remember,
    help="Show tracebacks for errors.",
)  # fmt: skip


def output_options(func: F) -> F:
    """``-q``/``-v``/``--debug``, accepted by every command, kept on its :class:`Options`."""
    for decorator in reversed([_QUIET, _VERBOSE, _DEBUG]):
        func = decorator(func)
    return func


def _handle_errors(func: F) -> F:
    """Turn gcsdvc errors into one message per line and an exit code, without a traceback.

    With ``--json`` the error is also one JSON document on standard output.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = _options().debug
        try:
            return func(*args, **kwargs)
        except ManifestError as exc:
            if debug:
                raise
            _fail(exc.problems, exc.exit_code)
        except GcsdvcError as exc:
            if debug:
                raise
            _fail([str(exc)], exc.exit_code)
        except BrokenPipeError:  # the reader stopped (`gcsdvc list | head -1`): nothing wrong
            # Python would report the pipe again when it flushes standard output at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as exc:  # a fault of this machine's files, met outside a per-file step
            if debug:
                raise
            _fail([local_fault(exc)], EXIT_FAILED)
        except sqlite3.Error as exc:  # DVC's state and link databases, under .dvc/tmp
            if debug:
                raise
            _fail([f"DVC's database in .dvc/tmp: {exc}"], EXIT_FAILED)
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("interrupted; run the same command again to finish", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _fail(problems: list[str], exit_code: int) -> None:
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if _options().json and not _options().printed:
        from gcsdvc.render import error_json

        _echo_json(error_json(problems, exit_code))
    sys.exit(exit_code)


def _merge_options(func: F) -> F:
    """Merge the options given before the command name with the command's own."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        opts = ctx.ensure_object(Options)
        name = ctx.command.name
        if "as_json" in kwargs:
            kwargs["as_json"] = opts.json = bool(kwargs["as_json"] or opts.json)
        elif opts.json:
            raise click.UsageError(f"'gcsdvc {name}' has no --json output")
        if "manifest_file" in kwargs:
            given = ctx.get_parameter_source("manifest_file") is ParameterSource.COMMANDLINE
            if opts.manifest is not None and not given:
                kwargs["manifest_file"] = opts.manifest
        elif opts.manifest is not None:
            raise click.UsageError(f"'gcsdvc {name}' takes no --manifest")
        began = time.monotonic()
        done = func(*args, **kwargs)
        if opts.verbose and not opts.json:
            retries = sum(s.retries.retries for s in opts.storages)
            took = f"{name}: took {elapsed(time.monotonic() - began)}"
            click.echo(took + (f", {retries} storage retries" if opts.storages else ""), err=True)
        return done

    return wrapper  # type: ignore[return-value]


def command(*args: Any, **kwargs: Any) -> Callable[[F], click.Command]:
    """``@main.command`` with the options and error handling every command shares."""

    def decorate(func: F) -> click.Command:
        wrapped = output_options(_handle_errors(_merge_options(pass_options(func))))
        made: click.Command = main.command(*args, **kwargs)(wrapped)
        return made

    return decorate


def _load(manifest_file: Path | None) -> Manifest:
    manifest = load_manifest(manifest_file, how=f"pass --manifest PATH (or set {MANIFEST_ENV})")
    if not _options().quiet:
        for warning in manifest.warnings:
            click.echo(f"warning: {warning}", err=True)
    return manifest


def quiet_google_warnings() -> None:
    """Hide the FutureWarnings Google's libraries print on import (Python versions, ...).

    They are about our dependencies, not about anything the user can change.
    """
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google(\.|$)")


class _Group(click.Group):
    """Commands listed in the order of the workflow, each with its whole summary; a usage
    error is a JSON document too when --json was read before it."""

    ORDER = (
        "add", "discover", "migrate", "validate", "sync", "update", "status", "list", "show",
        "which", "rm", "doctor",
    )  # fmt: skip

    def list_commands(self, ctx: click.Context) -> list[str]:
        rank = {name: n for n, name in enumerate(self.ORDER)}
        return sorted(self.commands, key=lambda name: rank.get(name, len(rank)))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            opts = ctx.find_object(Options)
            if opts is not None and opts.json and not opts.printed:
                from gcsdvc.render import error_json

                _echo_json(error_json([exc.format_message()], exc.exit_code))
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.commands[name]
            if not cmd.hidden:
                # The first sentence, never cut: click would cut it to the terminal's width.
                rows.append((name, cmd.get_short_help_str(limit=10_000)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@_QUIET
@_VERBOSE
@_DEBUG
@click.option(
    "--json", is_flag=True, expose_value=False, callback=_remember,
    help="Print JSON (one documented schema per command).",
)  # fmt: skip
@click.option(
    "--manifest", "-m", "manifest", type=click.Path(dir_okay=False, path_type=Path),
    expose_value=False, callback=_remember,
    help=f"Manifest file [default: ${MANIFEST_ENV}, else params.yaml at the DVC root].",
)  # fmt: skip
@click.version_option(package_name="gcsdvc")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Bring experiment outputs from Google Cloud Storage into a DVC repository.

    Every experiment is one entry of the resources manifest (params.yaml, or
    $GCSDVC_MANIFEST); `gcsdvc sync` turns each listed file into a DVC import stage.
    -q, -v, --debug, --json and -m work before or after the command name.

    \b
    Examples:
      gcsdvc validate
      gcsdvc sync --dry-run
      gcsdvc -q sync 'exp-*'
      gcsdvc migrate old_resources.py -o params.yaml
      gcsdvc discover gs://my-bucket/mnist-cnn --add -f '*.json'
      gcsdvc install
    """
    ctx.ensure_object(Options)
    quiet_google_warnings()


@command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@manifest_option
@json_option
@click.option(
    "--manifests-only", is_flag=True,
    help="Skip FILES with neither a 'resources' nor a 'gcsdvc' key (DVC params, not manifests).",
)  # fmt: skip
def validate(
    opts: Options,
    files: tuple[Path, ...],
    manifest_file: Path | None,
    as_json: bool,
    manifests_only: bool,
) -> None:
    """Check manifests and report every problem, one per line.

    FILES are manifests to check (as pre-commit passes them); without FILES
    the manifest of --manifest, $GCSDVC_MANIFEST or params.yaml is checked.
    Exit 2 when any is invalid. With --manifests-only (the pre-commit hook)
    YAML files that are not gcsdvc manifests pass.

    \b
    Examples:
      gcsdvc validate
      gcsdvc validate params.yaml other/params.yaml --json
    """
    from gcsdvc.hooks import is_manifest
    from gcsdvc.render import entry_lines, validate_json, validate_line

    results: list[tuple[Path, Manifest | ManifestError]] = []
    skipped: list[Path] = []  # not manifests (--manifests-only)
    for file in files or (manifest_file,):
        if manifests_only and file is not None and not is_manifest(file):
            skipped.append(file.absolute())
            continue
        try:
            manifest = load_manifest(file, how=f"pass --manifest PATH (or set {MANIFEST_ENV})")
        except ManifestError as exc:
            results.append((Path(file or "params.yaml").absolute(), exc))
        else:
            results.append((manifest.path, manifest))
    if as_json:
        _echo_json(validate_json(results))
    for path in skipped:
        if not as_json and not opts.quiet:
            click.echo(f"{_shown(path)}: not a gcsdvc manifest (no 'resources' or 'gcsdvc' key)")
    for path, outcome in results:
        if isinstance(outcome, ManifestError):
            if not as_json:
                for problem in outcome.problems:
                    click.echo(f"error: {problem}", err=True)
            continue
        if not as_json and not opts.quiet:
            for warning in outcome.warnings:
                click.echo(f"warning: {warning}", err=True)
            click.echo(validate_line(_shown(path), outcome))
            if opts.verbose:
                for line in entry_lines(outcome):
                    click.echo(line)
    if any(isinstance(outcome, ManifestError) for _, outcome in results):
        sys.exit(EXIT_USAGE)


@command()
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the YAML manifest here instead of to standard output.",
)
@click.option(
    "--force", is_flag=True, help="Replace the 'resources' OUTPUT already has (only that key)."
)
@json_option
def migrate(opts: Options, old: Path, output: Path | None, force: bool, as_json: bool) -> None:
    """Convert an old Python manifest (resources = [...]) to YAML.

    The file is parsed, never run: anything but literal data is refused.
    The result is validated before it is written. When OUTPUT exists (a
    params.yaml with DVC params), the resources are merged into it, keeping
    its other keys and comments; --force replaces a 'resources' it already has.

    \b
    Example:
      gcsdvc migrate download_resources.py -o params.yaml
    """
    from gcsdvc.manifest import parse_manifest
    from gcsdvc.migrate import migrate_source

    try:
        source = old.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError([f"{old}: cannot read: {exc}"]) from None
    text = migrate_source(source, str(old))
    target = output or Path("params.yaml")
    manifest = parse_manifest(text, target, target.absolute().parent)
    if not opts.quiet and not as_json:
        for warning in manifest.warnings:
            click.echo(f"warning: {warning}", err=True)
    names = [r.name for r in manifest.resources]
    doc = {"output": None, "names": names, "warnings": list(manifest.warnings)}
    if output is None:
        if as_json:
            _echo_json({**doc, "yaml": text})
        else:
            click.echo(text, nl=False)
        return
    from gcsdvc.authoring import read_manifest_text
    from gcsdvc.manifest_edit import merge_resources, write_atomic
    from gcsdvc.render import repo_path

    text = merge_resources(read_manifest_text(output), text, force=force, shown=str(output))
    parse_manifest(text, output, output.absolute().parent)
    write_atomic(output, text)
    if as_json:
        _echo_json({**doc, "output": repo_path(output), "yaml": None})
    elif not opts.quiet:
        if opts.verbose:
            for name in names:
                click.echo(f"  {name}", err=True)
        click.echo(f"wrote {len(manifest.resources)} experiment(s) to {output}", err=True)


@command()
@names_argument
@manifest_option
@click.option("--dry-run", "-n", is_flag=True, help="Print the plan; change nothing.")
@click.option("--prune", is_flag=True, help="Remove stages and data no longer in the manifest.")
@click.option(
    "--no-download", is_flag=True, help="Write the stages without data, for a later `dvc pull`."
)
@jobs_option
@click.option(
    "--force", is_flag=True,
    help="Replace local files in the way (untracked, or edited since synced).",
)  # fmt: skip
@progress_option
@click.option(
    "--to-remote", is_flag=True,
    help="Archive into the DVC remote (server-side where Cloud Storage can); download nothing.",
)  # fmt: skip
@click.option(
    "-r", "--remote", metavar="NAME",
    help="The DVC remote archived entries go to (default: the default remote).",
)  # fmt: skip
@json_option
def sync(
    opts: Options,
    names: tuple[str, ...],
    manifest_file: Path | None,
    dry_run: bool,
    prune: bool,
    no_download: bool,
    force: bool,
    jobs: int,
    progress_interval: float,
    to_remote: bool,
    remote: str | None,
    as_json: bool,
) -> None:
    """Download the manifest's files and write one DVC import stage per file.

    NAMES are experiment names or shell globs; without them every entry is synced.
    Progress goes to standard error: a bar on a terminal, a line every
    --progress-interval seconds otherwise (CI logs); -q silences it.

    \b
    Examples:
      gcsdvc sync                 # everything
      gcsdvc sync --dry-run -v    # what would change, per file
      gcsdvc sync 'bert-*' -j 32  # some experiments, more parallel downloads
      gcsdvc sync --prune         # also drop what left the manifest
      gcsdvc sync --to-remote run-7   # into the DVC remote, not onto this disk
    """
    from gcsdvc.progress import make_reporter
    from gcsdvc.sync import sync as run_sync

    manifest = _load(manifest_file)
    tally = make_reporter(opts.quiet, progress_interval, sys.stderr)
    result = run_sync(
        manifest,
        names,
        dry_run=dry_run,
        prune=prune,
        download=not no_download,
        force=force,
        jobs=jobs,
        reporter=tally,
        to_remote=to_remote,
        remote=remote,
    )
    _report_sync(opts, result, manifest.root, dry_run, as_json, tally)


def _report_sync(
    opts: Options, result: SyncResult, root: Path, dry_run: bool, as_json: bool, tally: Tally
) -> None:
    """Print what a sync (or an update) did, and exit 1 when something failed."""
    from gcsdvc.render import git_hint_lines, plan_lines, summary_lines, sync_json

    quiet, verbose = opts.quiet, opts.verbose
    if as_json:
        _echo_json(sync_json(result, dry_run, tally.nbytes, tally.elapsed))
    else:
        if not quiet:
            failed = {(f.name, f.source) for f in result.failures}
            for line in plan_lines(result.plan, verbose=verbose, failed=failed):
                click.echo(line)
        summary = summary_lines(
            result, dry_run, verbose, quiet, nbytes=tally.nbytes, seconds=tally.elapsed
        )
        for line in summary:
            click.echo(line, err=line.startswith(("failed", "warning", "leftover")))
        if not quiet:
            for line in git_hint_lines(result, root):
                click.echo(line)
    if not result.ok:
        sys.exit(EXIT_FAILED)


@command()
@names_argument
@manifest_option
@json_option
@click.option(
    "--check", "check_only", is_flag=True,
    help="Exit 1 when something needs action (an upstream change that skip_if_exist: true "
    "keeps out does not).",
)  # fmt: skip
@click.option(
    "--strict", is_flag=True, help="With --check, upstream changes of kept copies fail too."
)
@click.option("--offline", is_flag=True, help="Skip the upstream check (no Cloud Storage access).")
@click.option(
    "--pre-commit", "pre_commit", is_flag=True,
    help="As the pre-commit hook: no manifest (or no DVC repository) passes, and with --check "
    "files only not synced yet (missing, not-synced) pass unless --strict.",
)  # fmt: skip
def status(
    opts: Options,
    names: tuple[str, ...],
    manifest_file: Path | None,
    as_json: bool,
    check_only: bool,
    strict: bool,
    offline: bool,
    pre_commit: bool,
) -> None:
    """Compare the local data with its stages and (unless --offline) with the bucket.

    Every file is in one state: ok, missing, modified, changed-upstream,
    deleted-upstream, not-synced or in-remote (rarer: untracked, source-moved, not-found,
    foreign-stage). Orphans are stages whose entry or file has
    left the manifest. NAMES are experiment names or shell globs. Outside a
    DVC repository this is an error (exit 2). -q prints nothing (use the exit
    code with --check).

    \b
    Examples:
      gcsdvc status
      gcsdvc status 'bert-*' --offline
      gcsdvc status --check --json   # in CI: exit 1 when something needs action
      gcsdvc status --check --strict # ... or any object changed upstream
    """
    from gcsdvc.status import check

    if pre_commit and (skipped := _nothing_to_check(manifest_file)):
        if not opts.quiet:
            click.echo(f"gcsdvc status: {skipped}; nothing to check")
        return
    manifest = _load(manifest_file)
    _require_repo(manifest)
    storage = None if offline else _storage()
    report = check(manifest, names, offline=offline, storage=storage, detail=as_json)
    if not opts.quiet:
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
    if as_json:
        _echo_json(report.as_json(strict))
    elif not opts.quiet:
        for line in status_lines(report, manifest.root, verbose=opts.verbose):
            click.echo(line)
    if check_only and pre_commit:
        from gcsdvc.hooks import blocks_commit, unsynced_count

        if blocks_commit(report, strict):
            sys.exit(EXIT_FAILED)
        if (unsynced := unsynced_count(report)) and not opts.quiet:
            click.echo(
                f"pre-commit: passes: {unsynced} file(s) only not synced yet "
                "('gcsdvc sync' or 'dvc pull' brings them; --strict fails on them)"
            )
    elif check_only and report.needs_action(strict):
        sys.exit(EXIT_FAILED)


@command("list")
@manifest_option
@json_option
@click.option("--grep", metavar="TEXT", help="Only experiments whose name or description has TEXT.")
def list_command(
    opts: Options, manifest_file: Path | None, as_json: bool, grep: str | None
) -> None:
    """List the experiments: description, source, local folder, size and sync state.

    The state is local only (nothing is asked of Cloud Storage); `gcsdvc status`
    also checks upstream. --grep ignores case, in any language.

    \b
    Examples:
      gcsdvc list
      gcsdvc list --grep 'learning rate' --json
    """
    from gcsdvc.find import search
    from gcsdvc.render import list_lines
    from gcsdvc.status import check, resource_json

    manifest = _load(manifest_file)
    statuses = check(manifest, offline=True).resources
    if grep is not None:
        statuses = search(statuses, grep)
    if as_json:
        _echo_json({"resources": [resource_json(s, with_files=False) for s in statuses]})
        return
    if opts.quiet:
        return
    for line in list_lines(statuses, manifest.root, verbose=opts.verbose):
        click.echo(line)
    if grep is not None and not statuses:
        click.echo(f"no experiment matches {grep!r}", err=True)


@command()
@click.argument("name", shell_complete=_complete_names)
@manifest_option
@json_option
def show(opts: Options, name: str, manifest_file: Path | None, as_json: bool) -> None:
    """Show one experiment and the local state of each of its files.

    \b
    Example:
      gcsdvc show mnist-lr-0.1
    """
    from gcsdvc.find import exact_pattern
    from gcsdvc.render import show_lines
    from gcsdvc.status import check, resource_json

    manifest = _load(manifest_file)
    manifest.get(name)  # an unknown name fails here, with close matches
    report = check(manifest, [exact_pattern(name)], offline=True)
    (s,) = report.resources
    if as_json:
        _echo_json(resource_json(s, with_files=True, pinned=report.pinned))
        return
    if not opts.quiet:
        for line in show_lines(s, manifest.root, report.pinned, verbose=opts.verbose):
            click.echo(line)


@command()
@click.argument("path", type=click.Path(path_type=Path))
@manifest_option
@json_option
def which(opts: Options, path: Path, manifest_file: Path | None, as_json: bool) -> None:
    """Tell which experiment and object a local file (or its .dvc) comes from.

    Also says whether the file is current: whether its md5 is the one recorded.

    \b
    Example:
      gcsdvc which data/mnist/lr-0.1/metrics.json
    """
    from gcsdvc import fixes
    from gcsdvc.find import which as find
    from gcsdvc.status import State

    manifest = _load(manifest_file)
    info = find(manifest, path)
    if as_json:
        _echo_json(info.as_json())
        return
    if opts.quiet:
        return
    item = info.item
    name = info.name if info.in_manifest else f"{info.name} (no longer in the manifest)"
    inside = f" (in the whole-prefix import {rel(manifest.root, item.local)})" if info.inner else ""
    shown = rel(manifest.root, item.local)  # the fix names the path as seen from here
    subject = fixes.Subject(info.name, shown, item.stage_file, folder=item.file is None)
    fix = fixes.shown(fixes.fix(item.state, subject))
    states = {
        State.OK: f"current (the {'import' if info.inner else 'local copy'} matches the stage)",
        State.MISSING: f"missing (not on disk; '{fix}' restores it)",
        State.MODIFIED: f"modified ({item.note}); '{fix}' restores the recorded copy",
        State.SUPERSEDED: f"superseded ({item.note}); '{fix}' puts the recorded version in place",
    }
    click.echo(f"{path}{inside}")
    click.echo(f"  experiment:  {name}")
    click.echo(f"  description: {one_line(info.description)}")
    click.echo(f"  source:      {info.source}")
    click.echo(f"  stage:       {rel(manifest.root, item.stage_file)}")
    if not info.inner:  # a folder's md5 and size say little about one file in it
        click.echo(f"  md5:         {item.md5 or '(not recorded)'}")
        if item.size is not None:
            click.echo(f"  size:        {item.size} bytes")
    remote = item.stage.remote if item.stage is not None else None
    if remote is not None and item.md5:
        from gcsdvc.archive import file_url

        click.echo(f"  archived:    {file_url(manifest.root, remote, item.md5)}")
        pull = f"dvc pull {quote(rel(manifest.root, item.stage_file))}"
        states[State.IN_REMOTE] = f"in the DVC remote '{remote}' only ('{pull}' fetches it)"
    click.echo(f"  state:       {states.get(item.state, str(item.state))}")
    if opts.verbose and item.note:
        click.echo(f"  note:        {item.note}")


# -- authoring: add and discover -------------------------------------------------


def _entry_options(func: F) -> F:
    """The options ``add`` and ``discover --add`` share."""
    for option in reversed(
        [
            click.option(
                "--file",
                "-f",
                "files",
                multiple=True,
                metavar="PATTERN",
                help="A path or glob relative to the run's prefix (repeatable); "
                "none: the whole prefix.",
            ),
            click.option(
                "--follow-upstream",
                is_flag=True,
                help="Follow upstream changes (skip_if_exist: false).",
            ),
            click.option("--sync", "then_sync", is_flag=True, help="Sync the new entries."),
            click.option("--dry-run", "-n", is_flag=True, help="Print the entries; write nothing."),
        ]
    ):
        func = option(func)
    return func


@command()
@click.argument("url", metavar="gs://BUCKET/BLOB/SUBBLOB")
@click.option("--name", help="Experiment name [default: SUBBLOB, made unique].")
@click.option("--destination", help="Folder below the data folder [default: BLOB/SUBBLOB].")
@click.option("--description", "-d", default="", help="What was varied in this run.")
@_entry_options
@click.option("--no-check", is_flag=True, help="Do not check the bucket (offline).")
@json_option
@manifest_option
def add(
    opts: Options,
    url: str,
    files: tuple[str, ...],
    name: str | None,
    destination: str | None,
    description: str,
    follow_upstream: bool,
    then_sync: bool,
    dry_run: bool,
    no_check: bool,
    as_json: bool,
    manifest_file: Path | None,
) -> None:
    """Add one experiment to the manifest, keeping every other line of the file as it was.

    The entry is validated with the manifest, and (unless --no-check) the prefix,
    each --file path and each glob are looked up in the bucket first.

    \b
    Examples:
      gcsdvc add gs://my-bucket/mnist-cnn/lr-0.5 -f metrics.json -f '*.csv'
      gcsdvc add gs://my-bucket/mnist-cnn/lr-0.5 -d "learning rate 0.5" --sync
      gcsdvc add gs://my-bucket/bert/run-7 --name bert-7 --dry-run
    """
    from gcsdvc.authoring import (
        add_entries,
        load_or_empty,
        new_entry,
        source_of,
        taken_destinations,
    )

    path = manifest_path(manifest_file, how=f"pass --manifest PATH (or set {MANIFEST_ENV})")
    manifest = load_or_empty(path)
    source = source_of(url)
    entry = new_entry(
        source,
        manifest.names,
        files=files,
        name=name,
        destination=destination,
        description=description,
        follow_upstream=follow_upstream,
        destinations=taken_destinations(manifest, source),
    )
    added = add_entries(path, [entry], None if no_check else _storage(), dry_run=dry_run)
    if as_json:
        _echo_json({"added": [e["name"] for e in added.entries], "written": added.written})
    _report_added(added, dry_run, then_sync, quiet=as_json or opts.quiet)


@command()
@click.argument("url", metavar="gs://BUCKET/BLOB")
@click.option("--add", "add_new", is_flag=True, help="Add an entry for each run not tracked yet.")
@click.option(
    "--description", "-d", default="", help="With --add: description; {run} is the run's name."
)
@_entry_options
@click.option("--stats", is_flag=True, help="Count objects, size and last update (lists each run).")
@json_option
@manifest_option
def discover(
    opts: Options,
    url: str,
    files: tuple[str, ...],
    add_new: bool,
    description: str,
    follow_upstream: bool,
    then_sync: bool,
    dry_run: bool,
    stats: bool,
    as_json: bool,
    manifest_file: Path | None,
) -> None:
    """List the run folders under a prefix and which are in the manifest; --add adds the rest.

    One delimiter listing of gs://BUCKET/BLOB/ (--stats adds one listing per run).
    New entries get the same defaults and checks as `gcsdvc add`, in one write.

    \b
    Examples:
      gcsdvc discover gs://my-bucket/mnist-cnn
      gcsdvc discover gs://my-bucket/mnist-cnn --add -f '*.json' -d 'MNIST run {run}'
      gcsdvc discover gs://my-bucket/mnist-cnn --add -f '*.json' --sync   # a new run: track it
    """
    from gcsdvc.authoring import add_entries, entries_for_runs, load_or_empty
    from gcsdvc.authoring import discover as find_runs

    path = manifest_path(manifest_file, how=f"pass --manifest PATH (or set {MANIFEST_ENV})")
    manifest = load_or_empty(path)
    storage = _storage()
    runs = find_runs(manifest, url, storage, stats=stats)
    added = None
    if add_new:
        entries = entries_for_runs(
            manifest, runs, files=files, description=description, follow_upstream=follow_upstream
        )
        if entries:
            added = add_entries(path, entries, storage, dry_run=dry_run, skip_empty=True)
    if as_json:
        names = [e["name"] for e in added.entries] if added else []
        _echo_json(
            {
                "runs": [r.as_json() for r in runs],
                "added": names,
                "skipped": added.skipped if added else [],
                "written": bool(added and added.written),
            }
        )
    elif not opts.quiet:
        verbose = opts.verbose
        width = max((cells(r.name) for r in runs), default=0)
        for r in runs:
            state = f"tracked ({', '.join(r.tracked_by)})" if r.tracked_by else "new"
            extra = ""
            if r.stats is not None:
                when = (r.stats.updated or "")[:16].replace("T", " ")
                extra = f"  {amount(r.stats.objects, r.stats.size)}  {when}".rstrip()
            click.echo(f"{pad(r.name, width)}  {state}{extra}")
            if verbose:
                click.echo(f"    gs://{r.source.bucket}/{r.source.prefix}/")
        new = sum(1 for r in runs if not r.tracked_by)
        hint = f"; 'gcsdvc discover {quote(url)} --add' adds them" if new and not add_new else ""
        click.echo(f"{len(runs)} run(s), {len(runs) - new} tracked, {new} new{hint}")
    if added is not None:
        _report_added(added, dry_run, then_sync, quiet=as_json or opts.quiet)


@command()
@manifest_option
@json_option
def install(opts: Options, manifest_file: Path | None, as_json: bool) -> None:
    """Let git merge the manifest by entry name (once per clone).

    Branches that each add entries append them at the same place, which git's
    line merge reports as a conflict. This registers gcsdvc's merge driver in
    .git/config and names the manifest in .gitattributes (commit that file):
    entries added, removed or changed on one side are merged by name; a value
    changed differently on both sides is still a conflict, with git's usual
    markers. As with 'dvc install', each clone runs it once; where it has not
    run, git merges the file line by line as before.

    \b
    Examples:
      gcsdvc install
      gcsdvc install -m configs/params.yaml
    """
    from gcsdvc.merge import install as install_driver

    path = manifest_path(manifest_file, how=f"pass --manifest PATH (or set {MANIFEST_ENV})")
    installed = install_driver(path)
    if as_json:
        _echo_json(
            {"driver": installed.driver, "attribute": installed.attribute, "done": installed.done}
        )
    elif not opts.quiet:
        already = f"the manifest merge driver is already installed for {_shown(path)}"
        for line in installed.done or [already]:
            click.echo(line)
        if opts.verbose:
            click.echo(f"  driver:    {installed.driver}")
            click.echo(f"  attribute: {installed.attribute}")


@command("merge-manifest", hidden=True)
@click.argument("base", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("ours", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("theirs", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("path", required=False, default="manifest")
def merge_manifest(opts: Options, base: Path, ours: Path, theirs: Path, path: str) -> None:
    """git's merge driver for the manifest (see 'gcsdvc install'): BASE OURS THEIRS [PATH].

    The result is written to OURS; exit 1 with git's conflict markers when a
    value was changed differently on both sides.
    """
    from gcsdvc.merge import merge_files

    problems = merge_files(base, ours, theirs, path)
    for problem in problems:
        click.echo(f"conflict: {problem}", err=True)
    if problems:
        click.echo(
            f"conflict: {path} keeps git's markers; edit it to keep what both sides meant, "
            f"check it with 'gcsdvc validate', then 'git add {path}'",
            err=True,
        )
        sys.exit(EXIT_FAILED)


# -- doctor, rm, update -----------------------------------------------------------


@command()
@manifest_option
@json_option
def doctor(opts: Options, manifest_file: Path | None, as_json: bool) -> None:
    """Report the versions, repository, manifest, data folder, DVC remote, credentials and
    storage a sync depends on; exit 1 with the fix of each problem found.

    \b
    Examples:
      gcsdvc doctor
      gcsdvc doctor --json -m vision/params.yaml
    """
    from gcsdvc.doctor import doctor as examine

    report = examine(manifest_file)
    if as_json:
        _echo_json(report.as_json())
    elif opts.quiet:
        for c in report.problems:
            click.echo(f"error: {c.topic}: {c.problem}" + (f"; {c.fix}" if c.fix else ""), err=True)
    else:
        click.echo(", ".join(f"{n} {v or '(not installed)'}" for n, v in report.versions.items()))
        width = max(cells(c.topic) for c in report.checks) + 2
        for c in report.checks:
            click.echo(f"{pad(c.topic + ':', width)} {c.found}")
            if c.problem is not None:
                click.echo(f"{pad('', width)} problem: {c.problem}")
            if c.fix is not None:
                click.echo(f"{pad('', width)} fix: {c.fix}")
        if report.problems:
            click.echo(f"{len(report.problems)} problem(s) found", err=True)
        else:
            click.echo("no problem found")
    if not report.ok:
        sys.exit(EXIT_FAILED)


@command("rm")
@click.argument("names", nargs=-1, required=True, shell_complete=_complete_names)
@manifest_option
@click.option(
    "--keep-data", is_flag=True,
    help="Keep the data files (and their .gitignore lines, so git keeps ignoring them); only "
    "the entries and their stages go. Nothing tracks those files any more: delete them, and "
    "their lines, when done.",
)  # fmt: skip
@click.option("--dry-run", "-n", is_flag=True, help="Print what would go; change nothing.")
@json_option
def rm(
    opts: Options,
    names: tuple[str, ...],
    manifest_file: Path | None,
    keep_data: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Remove experiments: their manifest entries, stages, data and .gitignore lines.

    Every other byte of the manifest stays. Data goes only when the DVC cache
    holds its bytes, so 'git checkout' of the manifest and stages, then 'gcsdvc
    sync NAME', bring it back without a download; a file edited since it was
    synced stops the command before anything changes.

    \b
    Examples:
      gcsdvc rm mnist-lr-0.1
      gcsdvc rm mnist-lr-0.1 mnist-lr-0.01 --dry-run
      gcsdvc rm mnist-lr-0.1 --keep-data
    """
    from gcsdvc.remove import remove

    manifest = _load(manifest_file)
    _require_repo(manifest)
    done = remove(manifest, names, keep_data=keep_data, dry_run=dry_run)
    if as_json:
        _echo_json(done.as_json())
        return
    if opts.quiet:
        return
    verb = "would remove" if dry_run else "removed"
    for r in done.removed:
        if keep_data:
            what = f"{len(r.locals)} stage(s); the data stays, still ignored by git"
        else:
            what = f"{len(r.locals)} file(s) with their stages and .gitignore lines"
        click.echo(f"{r.name}: {verb} the entry and {what}")
        if opts.verbose:
            for local in r.locals:
                click.echo(f"  {rel(manifest.root, local)}")
    if dry_run:
        click.echo("dry run: nothing written")
        return
    folders = sorted({p.rpartition("/")[0] for r in done.removed for p in r.locals})
    tops = [f for f in folders if not any(f.startswith(f"{o}/") for o in folders)]
    shown = " ".join(quote(rel(manifest.root, p)) for p in (str(done.manifest), *tops))
    if not keep_data and tops:
        again = " ".join(quote(r.name) for r in done.removed)
        click.echo(
            f"the bytes stay in the DVC cache; undo: git checkout HEAD -- {shown} "
            f"&& gcsdvc sync {again}"
        )
    if done.to_git_add:
        click.echo(f"to commit: git add {shown}")


@command()
@click.argument("names", nargs=-1, required=True, shell_complete=_complete_names)
@manifest_option
@click.option("--dry-run", "-n", is_flag=True, help="Print the plan; change nothing.")
@click.option("--force", is_flag=True, help="Replace local files edited since they were synced.")
@jobs_option
@progress_option
@json_option
def update(
    opts: Options,
    names: tuple[str, ...],
    manifest_file: Path | None,
    dry_run: bool,
    force: bool,
    jobs: int,
    progress_interval: float,
    as_json: bool,
) -> None:
    """Take upstream for kept copies (skip_if_exist: true) without editing the manifest.

    NAMES are experiment names or shell globs. Each file whose object changed
    is fetched and its stage records the newest object (its generation, when
    stages are pinned); an unchanged object is left alone. A local edit is kept
    unless --force, as with sync. Output and JSON are sync's.

    \b
    Examples:
      gcsdvc update mnist-lr-0.1
      gcsdvc update 'mnist-*' --dry-run
    """
    from gcsdvc.progress import make_reporter
    from gcsdvc.update import update as run_update

    manifest = _load(manifest_file)
    tally = make_reporter(opts.quiet, progress_interval, sys.stderr)
    result = run_update(manifest, names, dry_run=dry_run, force=force, jobs=jobs, reporter=tally)
    _report_sync(opts, result, manifest.root, dry_run, as_json, tally)


def _storage() -> Storage:
    from gcsdvc.storage import Storage

    storage = Storage()
    _options().storages.append(storage)
    return storage


def _report_added(added: Added, dry_run: bool, then_sync: bool, quiet: bool = False) -> None:
    from gcsdvc.find import exact_pattern
    from gcsdvc.manifest_edit import entry_text

    names = [str(e["name"]) for e in added.entries]
    if not quiet:
        for skipped in added.skipped:
            click.echo(f"skipped {skipped}", err=True)
    if not names:
        return
    if dry_run:
        if not quiet:
            click.echo(f"would add to {_shown(added.path)}:")
            for entry in added.entries:
                click.echo(entry_text(entry), nl=False)
            click.echo("dry run: nothing written")
        return
    if not quiet:
        for entry in added.entries:
            prefix = "/".join(p for p in (entry["blob"], entry.get("subblob")) if p)
            click.echo(f"added {entry['name']}: gs://{entry['bucket']}/{prefix}")
            if _options().verbose:
                click.echo(entry_text(entry), nl=False)
        if not then_sync:
            click.echo(
                f"wrote {_shown(added.path)}; 'gcsdvc sync {' '.join(map(quote, names))}' downloads"
            )
    if then_sync:
        ctx = click.get_current_context()
        opts = ctx.ensure_object(Options)
        if quiet:
            opts.quiet = True
        opts.json = False  # the document is out: the sync prints none (exit 1 says it failed)
        ctx.invoke(sync, names=tuple(exact_pattern(n) for n in names), manifest_file=added.path)


def _nothing_to_check(manifest_file: Path | None) -> str | None:
    """Why the status hook has nothing to check here (no repository, no manifest), or None."""
    from gcsdvc.hooks import is_manifest

    try:
        path = manifest_path(manifest_file)
    except NotARepoError:
        return "no DVC repository here (give the hook 'args: [-m, PATH/params.yaml]')"
    if not path.exists():
        return f"no manifest at {_shown(path)}"
    if not is_manifest(path):
        return f"{_shown(path)} is not a gcsdvc manifest (no 'resources' or 'gcsdvc' key)"
    return None


def _require_repo(manifest: Manifest) -> None:
    if not (manifest.root / ".dvc").is_dir():
        raise NotARepoError(
            f"{_shown(manifest.root)} is not in a DVC repository; {init_hint(manifest.root)}"
        )


def _echo_json(data: dict[str, Any]) -> None:
    import json

    from gcsdvc.render import JSON_SCHEMA

    click.echo(json.dumps({"schema": JSON_SCHEMA, **data}, indent=2, ensure_ascii=False))
    _options().printed = True


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run() -> None:
    """The ``gcsdvc`` program: the console script and ``python -m gcsdvc``."""
    collector.hold()  # start-up makes few reference cycles (see gcsdvc.collector)
    main(prog_name="gcsdvc")
