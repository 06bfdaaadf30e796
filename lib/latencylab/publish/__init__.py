"""Words and pictures from findings: templates and catalogs, figures, the notebook report (papermill,
nbconvert), summary.json and samples.csv. Never talks to a server."""
