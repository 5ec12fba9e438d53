"""Exit codes shared by the jobs and the Airflow operators that run them."""

#: Something went wrong (bad argument, missing input, crash): retrying may help.
FAILED = 1
#: The data was rejected by validation and nothing was published: retrying cannot help.
VALIDATION_REJECTED = 3
