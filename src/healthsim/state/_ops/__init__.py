"""The operations behind :class:`~healthsim.state.store.ScenarioStore`, engine-neutral.

Each module takes the database (a file path or a team store) and runs one kind of
operation through the engine interface (:mod:`healthsim.state._engines`); the store is
the small facade that checks arguments and calls them.
"""
