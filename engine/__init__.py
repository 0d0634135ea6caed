"""The procedures behind tools/: training (one run loop for both stages), testing, extraction,
inference.

tools/*.py parse a command line, load the config and call one function here; tests, benchmarks and
other code import these modules, never tools/ (CONTRIBUTING.md: the layout and how to extend it).
"""
