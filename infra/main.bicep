// lead push in Azure: `azd up` provisions this and deploys the app (azure.yaml). The shape follows Microsoft's
// Flex Consumption quickstart for Python (Azure-Samples/functions-quickstart-python-http-azd): main.bicep
// composes small modules under app/. Every module is written here, none fetched from a registry.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used in resource names and tags.')
param environmentName string

// The regions that offer Flex Consumption, as Microsoft's quickstart lists them
// (Azure-Samples/functions-quickstart-python-http-azd, infra/main.bicep); azd offers only these.
@minLength(1)
@description('Region of the Function App and every other resource but PostgreSQL (one that offers Flex Consumption).')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'eastus2euap'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Region of the PostgreSQL server; empty = `location`. Subscriptions are often refused PostgreSQL in some regions (LocationIsOfferRestricted): pick another here and keep the rest where it is (docs/deploy.md).')
param postgresLocation string = ''

@description('Dataverse environment URL, e.g. https://contoso.crm.dynamics.com')
param dataverseUrl string

@description('Private networking, as in the quickstart: a virtual network the Function App integrates with, private endpoints for storage, Key Vault and PostgreSQL, public network access off on all three (docs/deploy.md: what it costs, and how the postprovision hook reaches PostgreSQL).')
param vnetEnabled bool = true

@description('Upper bound of Function App instances. With host.json batchSize 16 + newBatchThreshold 8 each instance runs at most 24 pushes at once; 2 instances stay under Dataverse\'s 52 concurrent requests per user. Where a region refuses a cap this low, 40 with batchSize 1 and newBatchThreshold 0 does too (docs/deploy.md).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 2

@description('Memory of each Function App instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('PostgreSQL compute. Burstable tiers have no built-in PgBouncer; the app then connects on 5432.')
param postgresSkuName string = 'Standard_D2ds_v5'
@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param postgresSkuTier string = 'GeneralPurpose'

@description('Email address that receives the alerts; empty = no email receiver.')
param alertEmail string = ''

@description('Alert when more than this percentage of pushes in 15 minutes fail.')
param failedSharePercentThreshold int = 10

@description('Object id of the user running azd (set by azd): gets Key Vault Secrets Officer on the vault.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

param leadQueueName string = 'lead-push'

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}leadpush-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var publicNetworkAccess = vnetEnabled ? 'Disabled' : 'Enabled'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}leadpush-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    leadQueueName: leadQueueName
    publicNetworkAccess: publicNetworkAccess
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    publicNetworkAccess: publicNetworkAccess
  }
}

module postgres 'app/postgres.bicep' = {
  name: 'postgres'
  scope: rg
  params: {
    name: '${abbrs.dBforPostgreSQLServers}${resourceToken}'
    location: empty(postgresLocation) ? location : postgresLocation
    tags: tags
    skuName: postgresSkuName
    skuTier: postgresSkuTier
    publicNetworkAccess: publicNetworkAccess
  }
}

module network 'app/network.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: rg
  params: {
    name: '${abbrs.networkVirtualNetworks}${resourceToken}'
    location: location
    tags: tags
  }
}

module privateEndpoints 'app/private-endpoints.bicep' = if (vnetEnabled) {
  name: 'private-endpoints'
  scope: rg
  params: {
    namePrefix: '${abbrs.networkPrivateEndpoints}${resourceToken}-'
    location: location
    tags: tags
    vnetId: vnetEnabled ? network.outputs.id : ''
    subnetId: vnetEnabled ? network.outputs.privateEndpointSubnetId : ''
    storageAccountId: storage.outputs.id
    keyVaultId: keyVault.outputs.id
    postgresServerId: postgres.outputs.id
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    identityPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    identityName: identity.outputs.name
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    postgresHost: postgres.outputs.host
    postgresPort: postgres.outputs.appPort
    databaseName: postgres.outputs.databaseName
    webhookSecretUri: keyVault.outputs.webhookSecretUri
    dataverseUrl: dataverseUrl
    leadQueueName: leadQueueName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    virtualNetworkSubnetId: vnetEnabled ? network.outputs.appSubnetId : ''
  }
  // The identity must hold its roles before the host starts (storage) and resolves the Key Vault reference;
  // with vnetEnabled, the host reaches storage and the vault only through their private endpoints.
  dependsOn: [
    rbac
    privateEndpoints
  ]
}

module alerts 'app/monitoring-alerts.bicep' = {
  name: 'monitoring-alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    actionGroupName: '${abbrs.insightsActionGroups}leadpush-${resourceToken}'
    alertEmail: alertEmail
    failedSharePercentThreshold: failedSharePercentThreshold
  }
}

module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

// azd stores these in the environment (.azure/<env>/.env); the postprovision hook and docs/deploy.md use them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = 'https://${api.outputs.defaultHostName}'
output AZURE_MANAGED_IDENTITY_NAME string = identity.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_POSTGRES_SERVER_NAME string = postgres.outputs.name
output AZURE_POSTGRES_HOST string = postgres.outputs.host
output AZURE_POSTGRES_DATABASE string = postgres.outputs.databaseName
output AZURE_POSTGRES_APP_PORT int = postgres.outputs.appPort
output AZURE_POSTGRES_PUBLIC_NETWORK_ACCESS string = postgres.outputs.publicNetworkAccess
output DATAVERSE_URL string = dataverseUrl
output LEAD_QUEUE_NAME string = leadQueueName
