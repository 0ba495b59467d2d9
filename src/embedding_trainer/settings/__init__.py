"""The settings edge: config resolvers, the checks that run before anything loads, settings blocks."""
