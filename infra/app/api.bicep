// The Flex Consumption Function App (Python 3.11, Linux) running as the user-assigned identity, and every app
// setting shared/runtime/settings.py reads. No connection string with a key, no password: storage, PostgreSQL, Application
// Insights and Dataverse are reached with the identity's tokens, the webhook secret is a Key Vault reference.
param name string
param planName string
param location string = resourceGroup().location
param tags object = {}
param serviceName string = 'api'

param identityId string
param identityClientId string
param identityName string

param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string

param postgresHost string
param postgresPort int
param databaseName string
@description('Key Vault secret URI of the Hunter webhook secret (versionless).')
param webhookSecretUri string

@description('Dataverse environment URL, e.g. https://contoso.crm.dynamics.com')
param dataverseUrl string
param leadQueueName string = 'lead-push'
@description('Upper bound of PostgreSQL connections per worker process (DATABASE_POOL_MAX).')
param databasePoolMax int = 4
@description('How long a push owns its lead (LEAD_LEASE_SECONDS); shorter than host.json functionTimeout.')
param leadLeaseSeconds int = 120

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 2
@description('Subnet the app integrates with (vnetEnabled); empty = none.')
param virtualNetworkSubnetId string = ''
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Flex Consumption sets FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION itself and refuses them here.
var appSettings = {
  // Host storage (and the lead queues) through the identity: the host's identity-based connection form.
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // Application Insights without its instrumentation-key auth: the identity signs the telemetry.
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
  // every trace whole: a webhook call and its pushes are kept together (the default sampler keeps ~5/s)
  OTEL_TRACES_SAMPLER: 'microsoft.fixed_percentage'
  OTEL_TRACES_SAMPLER_ARG: '1.0'
  // PostgreSQL through PgBouncer (6432) where enabled; the password is an Entra token for the identity.
  DATABASE_URL: 'postgresql://${identityName}@${postgresHost}:${postgresPort}/${databaseName}?sslmode=require'
  DATABASE_AUTH: 'managed_identity'
  DATABASE_POOL_MAX: string(databasePoolMax)
  LEAD_LEASE_SECONDS: string(leadLeaseSeconds)
  LEAD_QUEUE_NAME: leadQueueName
  // the timer that reads what became of the leads in the CRM (the host resolves %CRM_OUTCOME_SCHEDULE%)
  CRM_OUTCOME_SCHEDULE: '0 */5 * * * *'
  D365_URL: dataverseUrl
  D365_AUTH_MODE: 'managed_identity'
  D365_MANAGED_IDENTITY_CLIENT_ID: identityClientId
  HUNTER_WEBHOOK_SECRET: '@Microsoft.KeyVault(SecretUri=${webhookSecretUri})'
  HUNTER_ALLOW_UNSIGNED: 'false'
  LOG_LEVEL: 'INFO'
  // The push is synchronous: the worker runs it on a thread pool of min(32, CPUs + 4) threads unless told
  // otherwise. host.json lets the host hand out batchSize 16 + newBatchThreshold 8 = 24 messages per instance.
  PYTHON_THREADPOOL_THREAD_COUNT: '24'
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: appSettings
}

output name string = functionApp.name
output id string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
