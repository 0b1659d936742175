"""Read models: what the API and the CLI show (a run's detail, a sensor's status), as data."""
