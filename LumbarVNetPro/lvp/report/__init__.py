"""The outputs of ``lvp infer``: the ``report.json`` schema and the HTML report."""
