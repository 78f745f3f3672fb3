"""`comp tune`: Optuna on the honest CV of a config, with a study that many processes can join.

```
runs/<study>/study.yaml        the study's identity: config, space, folds, metric and direction, storage
runs/<study>/study.journal     Optuna's journal (the default storage; --storage URL for an RDB instead)
runs/<study>/trial-<n>/        each trial, an ordinary run named <study>/trial-<n> (config.yaml, run.yaml,
                               fold-<k>/, and oof.parquet ... once every fold of the run is trained)
runs/<study>/trials.csv        `comp tune --show`: one row per trial
runs/<study>/figures/          history.png, importances.png (`comp tune --show`)
configs/<name>-best.yaml       the best trial's resolved config (<name>: the config's stem, or --study's)
```

- :mod:`comp.tune.space`: the search space file, checked against the family.
- :mod:`comp.tune.study`: storage, study.yaml, trials of dead workers, the trial budget.
- :mod:`comp.tune.objective`: the honest CV of a trial's folds, reported fold by fold to the pruner.
- :mod:`comp.tune.worker`: one `comp tune` worker: ask, train, tell, until the study has its trials.
- :mod:`comp.tune.show`: the trials table, the best trial and the figures.
"""
