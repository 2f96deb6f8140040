"""In-memory fakes of the app's ports (store, queues, Dataverse), held to the real adapters by the
contract tests in tests/contract."""
