"""The bias audit: CLIP's zero-shot reading of perceived attributes (auditor, attributes), prompt suites and
references, and the statistics, summaries, comparisons, classifier validation and reports built on the rows."""
