"""Local stand-ins for Dataverse, the App Service managed-identity endpoint and the Entra ID authority."""
