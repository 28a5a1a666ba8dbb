"""Tables and plotly figures of results: objects for notebooks, files for reports."""
