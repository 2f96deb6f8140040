"""The model: value types, outcomes, errors and the port protocols the use cases depend on.

The bottom layer of `shared/`: it imports no driver and no Azure SDK, only `d365` for the
Dataverse value types its ports name.
"""
