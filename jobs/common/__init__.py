"""What every job shares: configuration and settings, lake paths and storage, the Spark session, the GX gate,
the job runner (arguments, logging, exit codes) and the run (stage, publish or reject, manifest header).
Imports nothing from the stage packages."""
