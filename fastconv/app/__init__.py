"""The applications behind the `fastconv` command (fastconv/cli.py): the demo report, one method on a saved
model, a photo folder on a Dask cluster. They compose the library (fastconv.nn, fastconv.vis, fastconv.data);
the library never imports from here. Errors are ordinary exceptions; only the CLI turns them into exit codes."""
