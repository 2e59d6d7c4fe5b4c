"""The ``gcsdvc`` command line: parse, call the library, print, translate errors.

Exit codes are defined in :mod:`gcsdvc.errors`.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gcsdvc.errors import EXIT_FAILED, GcsdvcError, ManifestError
from gcsdvc.manifest import Manifest, load_manifest, manifest_path
from gcsdvc.render import amount, fix_lines, human_size, one_line, quote, rel, status_lines

if TYPE_CHECKING:
    from gcsdvc.authoring import Added
    from gcsdvc.storage import Storage

F = TypeVar("F", bound=Callable[..., Any])

manifest_option = click.option(
    "--manifest",
    "-m",
    "manifest_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Manifest file [default: params.yaml at the root of the DVC repository].",
)


def _handle_errors(func: F) -> F:
    """Turn gcsdvc errors into one message per line and an exit code, without a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return func(*args, **kwargs)
        except ManifestError as exc:
            if debug:
                raise
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            sys.exit(exc.exit_code)
        except GcsdvcError as exc:
            if debug:
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("interrupted; run the same command again to finish", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _load(manifest_file: Path | None, quiet: bool = False) -> Manifest:
    manifest = load_manifest(manifest_file)
    if not quiet:
        for warning in manifest.warnings:
            click.echo(f"warning: {warning}", err=True)
    return manifest


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="gcsdvc")
def main(debug: bool) -> None:
    """Bring experiment outputs from Google Cloud Storage into a DVC repository.

    Every experiment is one entry of the resources manifest (params.yaml);
    `gcsdvc sync` turns each listed file into a DVC import stage.

    \b
    Examples:
      gcsdvc validate
      gcsdvc sync --dry-run
      gcsdvc sync 'exp-*'
      gcsdvc migrate old_resources.py -o params.yaml
      gcsdvc discover gs://my-bucket/mnist-cnn --add -f '*.json'
    """


@main.command()
@manifest_option
@_handle_errors
def validate(manifest_file: Path | None) -> None:
    """Check the manifest and report every problem, one per line.

    \b
    Example:
      gcsdvc validate --manifest params.yaml
    """
    manifest = _load(manifest_file)
    files = sum(len(r.files or ()) for r in manifest.resources)
    folders = sum(1 for r in manifest.resources if r.files is None)
    extra = f" and {folders} whole prefix(es)" if folders else ""
    click.echo(
        f"{_shown(manifest.path)}: {len(manifest.resources)} experiment(s), "
        f"{files} file(s){extra}: OK"
    )


@main.command()
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
@_handle_errors
def migrate(old: Path, output: Path | None, force: bool) -> None:
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
    for warning in manifest.warnings:
        click.echo(f"warning: {warning}", err=True)
    if output is None:
        click.echo(text, nl=False)
        return
    from gcsdvc.authoring import read_manifest_text
    from gcsdvc.manifest_edit import merge_resources, write_atomic

    text = merge_resources(read_manifest_text(output), text, force=force, shown=str(output))
    parse_manifest(text, output, output.absolute().parent)
    write_atomic(output, text)
    click.echo(f"wrote {len(manifest.resources)} experiment(s) to {output}", err=True)


@main.command()
@click.argument("names", nargs=-1)
@manifest_option
@click.option("--dry-run", "-n", is_flag=True, help="Print the plan; change nothing.")
@click.option("--prune", is_flag=True, help="Remove stages and data no longer in the manifest.")
@click.option(
    "--no-download", is_flag=True, help="Write the stages without data, for a later `dvc pull`."
)
@click.option(
    "-j", "--jobs", type=click.IntRange(1, 256), default=16, show_default=True,
    help="Parallel downloads.",
)  # fmt: skip
@click.option(
    "--force", is_flag=True,
    help="Replace local files in the way (untracked, or edited since synced).",
)  # fmt: skip
@click.option("-v", "--verbose", is_flag=True, help="List every file, and the retries made.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
@_handle_errors
def sync(
    names: tuple[str, ...],
    manifest_file: Path | None,
    dry_run: bool,
    prune: bool,
    no_download: bool,
    force: bool,
    jobs: int,
    verbose: bool,
    quiet: bool,
) -> None:
    """Download the manifest's files and write one DVC import stage per file.

    NAMES are experiment names or shell globs; without them every entry is synced.

    \b
    Examples:
      gcsdvc sync                 # everything
      gcsdvc sync --dry-run -v    # what would change, per file
      gcsdvc sync 'bert-*' -j 32  # some experiments, more parallel downloads
      gcsdvc sync --prune         # also drop what left the manifest
    """
    from gcsdvc.render import plan_lines, summary_lines
    from gcsdvc.sync import sync as run_sync

    manifest = _load(manifest_file, quiet)
    reporter = _Progress() if not quiet and sys.stderr.isatty() else None
    result = run_sync(
        manifest,
        names,
        dry_run=dry_run,
        prune=prune,
        download=not no_download,
        force=force,
        jobs=jobs,
        reporter=reporter,
    )
    if not quiet:
        for line in plan_lines(result.plan, verbose=verbose):
            click.echo(line)
    for line in summary_lines(result, dry_run=dry_run, verbose=verbose, quiet=quiet):
        click.echo(line, err=line.startswith(("failed", "warning", "leftover")))
    if not result.ok:
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("names", nargs=-1)
@manifest_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--check", "check_only", is_flag=True,
    help="Exit 1 when something needs action (an upstream change that skip_if_exist: true "
    "keeps out does not).",
)  # fmt: skip
@click.option(
    "--strict", is_flag=True, help="With --check, upstream changes of kept copies fail too."
)
@click.option("--offline", is_flag=True, help="Skip the upstream check (no Cloud Storage access).")
@_handle_errors
def status(
    names: tuple[str, ...],
    manifest_file: Path | None,
    as_json: bool,
    check_only: bool,
    strict: bool,
    offline: bool,
) -> None:
    """Compare the local data with its stages and (unless --offline) with the bucket.

    Every file is in one state: ok, missing, modified, changed-upstream,
    deleted-upstream or not-synced (rarer: untracked, source-moved, not-found,
    foreign-stage). Orphans are stages whose entry or file has
    left the manifest. NAMES are experiment names or shell globs.

    \b
    Examples:
      gcsdvc status
      gcsdvc status 'bert-*' --offline
      gcsdvc status --check --json   # in CI: exit 1 when something needs action
      gcsdvc status --check --strict # ... or any object changed upstream
    """
    from gcsdvc.status import check

    manifest = _load(manifest_file)
    report = check(manifest, names, offline=offline)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        _echo_json(report.as_json(strict))
    else:
        for line in status_lines(report, manifest.root):
            click.echo(line)
    if check_only and report.needs_action(strict):
        sys.exit(EXIT_FAILED)


@main.command("list")
@manifest_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--grep", metavar="TEXT", help="Only experiments whose name or description has TEXT.")
@_handle_errors
def list_command(manifest_file: Path | None, as_json: bool, grep: str | None) -> None:
    """List the experiments: description, source, local folder, size and sync state.

    The state is local only (nothing is asked of Cloud Storage); `gcsdvc status`
    also checks upstream. --grep ignores case, in any language.

    \b
    Examples:
      gcsdvc list
      gcsdvc list --grep 'learning rate' --json
    """
    from gcsdvc.find import search
    from gcsdvc.status import check, resource_json

    manifest = _load(manifest_file)
    statuses = check(manifest, offline=True).resources
    if grep is not None:
        statuses = search(statuses, grep)
    if as_json:
        _echo_json({"resources": [resource_json(s, with_files=False) for s in statuses]})
        return
    width = max((len(s.resource.name) for s in statuses), default=0)
    for s in statuses:
        click.echo(f"{s.resource.name:<{width}}  {s.summary}  {amount(s.file_count, s.size)}")
        if s.resource.description:
            click.echo(f"    {one_line(s.resource.description)}")
        click.echo(f"    {s.resource.url} -> {rel(manifest.root, s.local)}")
    if grep is not None and not statuses:
        click.echo(f"no experiment matches {grep!r}", err=True)


@main.command()
@click.argument("name")
@manifest_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@_handle_errors
def show(name: str, manifest_file: Path | None, as_json: bool) -> None:
    """Show one experiment and the local state of each of its files.

    \b
    Example:
      gcsdvc show mnist-lr-0.1
    """
    from gcsdvc.find import exact_pattern
    from gcsdvc.status import State, check, resource_json

    manifest = _load(manifest_file)
    manifest.get(name)  # an unknown name fails here, with close matches
    report = check(manifest, [exact_pattern(name)], offline=True)
    (s,) = report.resources
    if as_json:
        _echo_json(resource_json(s, with_files=True, pinned=report.pinned))
        return
    res = s.resource
    click.echo(f"name:          {res.name}")
    click.echo(f"description:   {one_line(res.description)}")
    click.echo(f"source:        {res.url}")
    click.echo(f"local:         {rel(manifest.root, s.local)}")
    click.echo(f"skip_if_exist: {str(res.skip_if_exist).lower()}")
    click.echo(f"state:         {s.summary}, {amount(s.file_count, s.size)} (upstream not checked)")
    width = max(len(str(f.state)) for f in s.files)
    for f in s.files:
        recorded = f"  {human_size(f.size)}  md5 {f.md5}" if f.md5 and f.size is not None else ""
        note = f"  ({f.note})" if f.note and f.state is not State.OK else ""
        click.echo(f"  {f.state!s:<{width}}  {rel(manifest.root, f.local)}{recorded}{note}")
    for line in fix_lines(s, manifest.root, report.pinned):
        click.echo(line)


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@manifest_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@_handle_errors
def which(path: Path, manifest_file: Path | None, as_json: bool) -> None:
    """Tell which experiment and object a local file (or its .dvc) comes from.

    Also says whether the file is current: whether its md5 is the one recorded.

    \b
    Example:
      gcsdvc which data/mnist/lr-0.1/metrics.json
    """
    from gcsdvc.find import which as find
    from gcsdvc.status import State

    manifest = _load(manifest_file)
    info = find(manifest, path)
    if as_json:
        _echo_json(info.as_json())
        return
    item = info.item
    name = info.name if info.in_manifest else f"{info.name} (no longer in the manifest)"
    inside = f" (in the whole-prefix import {rel(manifest.root, item.local)})" if info.inner else ""
    states = {
        State.OK: f"current (the {'import' if info.inner else 'local copy'} matches the stage)",
        State.MISSING: f"missing (not on disk; 'gcsdvc sync {quote(info.name)}' restores it)",
        State.MODIFIED: f"modified ({item.note}); 'rm {quote(rel(manifest.root, item.local))} "
        f"&& gcsdvc sync {quote(info.name)}' restores the recorded copy",
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
    click.echo(f"  state:       {states.get(item.state, str(item.state))}")


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


@main.command()
@click.argument("url", metavar="gs://BUCKET/BLOB/SUBBLOB")
@click.option("--name", help="Experiment name [default: SUBBLOB, made unique].")
@click.option("--destination", help="Folder below the data folder [default: BLOB/SUBBLOB].")
@click.option("--description", "-d", default="", help="What was varied in this run.")
@_entry_options
@click.option("--no-check", is_flag=True, help="Do not check the bucket (offline).")
@manifest_option
@_handle_errors
def add(
    url: str,
    files: tuple[str, ...],
    name: str | None,
    destination: str | None,
    description: str,
    follow_upstream: bool,
    then_sync: bool,
    dry_run: bool,
    no_check: bool,
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
    from gcsdvc.authoring import add_entries, load_or_empty, new_entry, source_of

    path = manifest_path(manifest_file)
    manifest = load_or_empty(path)
    entry = new_entry(
        source_of(url),
        manifest.names,
        files=files,
        name=name,
        destination=destination,
        description=description,
        follow_upstream=follow_upstream,
    )
    added = add_entries(path, [entry], None if no_check else _storage(), dry_run=dry_run)
    _report_added(added, dry_run, then_sync)


@main.command()
@click.argument("url", metavar="gs://BUCKET/BLOB")
@click.option("--add", "add_new", is_flag=True, help="Add an entry for each run not tracked yet.")
@click.option(
    "--description", "-d", default="", help="With --add: description; {run} is the run's name."
)
@_entry_options
@click.option("--stats", is_flag=True, help="Count objects, size and last update (lists each run).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@manifest_option
@_handle_errors
def discover(
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

    path = manifest_path(manifest_file)
    manifest = load_or_empty(path)
    storage = _storage()
    runs = find_runs(manifest, url, storage, stats=stats)
    added = None
    if add_new:
        entries = entries_for_runs(
            manifest, runs, files=files, description=description, follow_upstream=follow_upstream
        )
        if entries:
            added = add_entries(path, entries, storage, dry_run=dry_run)
    if as_json:
        names = [e["name"] for e in added.entries] if added else []
        _echo_json(
            {
                "runs": [r.as_json() for r in runs],
                "added": names,
                "written": bool(added and added.written),
            }
        )
    else:
        width = max((len(r.name) for r in runs), default=0)
        for r in runs:
            state = f"tracked ({', '.join(r.tracked_by)})" if r.tracked_by else "new"
            extra = ""
            if r.stats is not None:
                when = (r.stats.updated or "")[:16].replace("T", " ")
                extra = f"  {amount(r.stats.objects, r.stats.size)}  {when}".rstrip()
            click.echo(f"{r.name:<{width}}  {state}{extra}")
        new = sum(1 for r in runs if not r.tracked_by)
        hint = f"; 'gcsdvc discover {quote(url)} --add' adds them" if new and not add_new else ""
        click.echo(f"{len(runs)} run(s), {len(runs) - new} tracked, {new} new{hint}")
    if added is not None:
        _report_added(added, dry_run, then_sync, quiet=as_json)


def _storage() -> Storage:
    from gcsdvc.storage import Storage

    return Storage()


def _report_added(added: Added, dry_run: bool, then_sync: bool, quiet: bool = False) -> None:
    from gcsdvc.find import exact_pattern
    from gcsdvc.manifest_edit import entry_text

    names = [str(e["name"]) for e in added.entries]
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
        if not then_sync:
            click.echo(
                f"wrote {_shown(added.path)}; 'gcsdvc sync {' '.join(map(quote, names))}' downloads"
            )
    if then_sync:
        click.get_current_context().invoke(
            sync,
            names=tuple(exact_pattern(n) for n in names),
            manifest_file=added.path,
            quiet=quiet,  # keeps --json output one document
        )


def _echo_json(data: object) -> None:
    import json

    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


class _Progress:
    """One self-rewriting progress line on stderr (only used on a terminal)."""

    def __init__(self) -> None:
        self.files = self.total_files = self.nbytes = self.total_bytes = 0
        self.last = 0.0

    def start(self, files: int, nbytes: int) -> None:
        self.total_files, self.total_bytes = files, nbytes

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        self.files += files
        self.nbytes += nbytes
        now = time.monotonic()
        if now - self.last > 0.1 or self.files == self.total_files:
            self.last = now
            click.echo(
                f"\rDownloading {self.files}/{self.total_files} files, "
                f"{human_size(self.nbytes)}/{human_size(self.total_bytes)}",
                err=True,
                nl=False,
            )

    def finish(self) -> None:
        click.echo("\r\033[K", err=True, nl=False)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":  # pragma: no cover
    main()
