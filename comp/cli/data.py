"""Workspace and data commands: init, fetch, info, folds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from comp import console, tables
from comp.cli.context import workspace
from comp.errors import CompError


def init(
    slug: Annotated[str, typer.Argument(help="Kaggle competition slug, e.g. emotion-detection-spring-2024.")],
    directory: Annotated[Path | None, typer.Argument(help="Folder to create (default: ./SLUG).")] = None,
) -> None:
    """Create a workspace: comp.yaml, configs/ with example model configs, data/, submissions/."""
    from comp.config import example_configs
    from comp.workspace import init_workspace

    examples = example_configs()
    ws = init_workspace(slug, directory or Path(slug), examples)
    console.echo(f"created workspace {ws.root}")
    console.echo(f"  comp.yaml, configs/ ({len(examples)} example configs), data/, submissions/")
    console.echo(f"next: cd {directory or slug} && comp fetch")


def fetch(
    ctx: typer.Context,
    slug: Annotated[str | None, typer.Argument(help="Competition slug (default: comp.yaml's).")] = None,
    from_: Annotated[Path | None, typer.Option("--from", help="A local folder or zip instead of Kaggle.")] = None,
    hf: Annotated[
        str | None, typer.Option("--hf", help="A Hugging Face dataset NAME[:CONFIG] (cached when offline).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace competition files that differ from data/'s.")] = False,
) -> None:
    """Download the competition files into data/, validate them and infer the schema into comp.yaml."""
    from comp import fetch as fetching

    ws = workspace(ctx)
    if from_ and hf:
        raise CompError("pass either --from or --hf, not both")
    if from_:
        result = fetching.fetch_local(ws, from_, force)
    elif hf:
        result = fetching.fetch_hf(ws, hf, force)
    else:
        result = fetching.fetch_kaggle(ws, slug, force)
    for note in result.notes:
        console.echo(note)
    console.echo(("data unchanged: " if result.unchanged else "fetched: ") + ", ".join(result.files))
    if result.filled:
        console.echo(f"inferred into comp.yaml: {', '.join(result.filled)}")
    tables.schema(ws.load_settings())


def info(ctx: typer.Context) -> None:
    """Schema, row counts, class prevalence, text lengths and data warnings."""
    from comp.data import load_competition
    from comp.info import describe

    ws = workspace(ctx)
    settings = ws.load_settings()
    data = describe(load_competition(ws, settings), settings.folds)
    tables.schema(settings)
    tables.data_description(data)


def folds(
    ctx: typer.Context,
    n_folds: Annotated[
        int | None, typer.Option("--folds", "-k", help="Number of folds (default: comp.yaml's).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: comp.yaml's).")] = None,
    group_column: Annotated[
        str | None, typer.Option("--group-column", help="Keep rows of a group in one fold.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rewrite the fold file if it exists.")] = False,
) -> None:
    """Write data/folds-k{K}-s{S}.csv (id, fold), stratified by label, and print the fold balance."""
    from comp.data import load_competition
    from comp.folds import class_warnings, fold_balance, load_folds, make_folds, write_folds
    from comp.workspace import check_folds

    ws = workspace(ctx)
    settings = ws.load_settings()
    n_folds = check_folds(n_folds, settings)
    seed = settings.seed if seed is None else seed
    group_column = group_column or settings.group_column
    comp = load_competition(ws, settings)
    path = ws.folds_csv(n_folds, seed, group_column)
    if path.exists() and not force:
        assignment = load_folds(path, comp, n_folds)
        console.echo(f"{ws.relative(path)} exists (use --force to rewrite it)")
    else:
        frame = make_folds(comp, n_folds, seed, group_column)
        write_folds(path, frame)
        assignment = frame["fold"].to_numpy()
        console.echo(f"wrote {ws.relative(path)}")
    tables.fold_balance(fold_balance(comp.Y, assignment, comp.classes, settings.task))
    for message in class_warnings(comp.Y, comp.classes, n_folds, settings.task):
        console.warn(message)
    if group_column and group_column != settings.group_column:
        console.warn(
            f"comp train uses comp.yaml's group_column ({settings.group_column}); set group_column: "
            f"{group_column} there so that runs train on these grouped folds"
        )
