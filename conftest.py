# The suite's data fixtures live in fixtures/; engine and case fixtures come with the plugin.
pytest_plugins = ["fixtures.data"]
