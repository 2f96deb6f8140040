// Key Vault with Azure RBAC (no access policies) for the Hunter webhook secret. The secret itself is not
// declared here: the postprovision hook creates it through ARM only when it does not exist yet, so a
// provision never replaces it and nothing has to read the vault's data plane (private with vnetEnabled).
param name string
param location string = resourceGroup().location
param tags object = {}
param webhookSecretName string = 'hunter-webhook-secret'
@description('Disabled with vnetEnabled: only the private endpoint reaches the vault.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Disabled'

var privateOnly = publicNetworkAccess == 'Disabled'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: privateOnly ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }
}

output name string = vault.name
output id string = vault.id
// Versionless: the app setting's Key Vault reference follows rotations (resolved again within a day, or on restart).
output webhookSecretUri string = '${vault.properties.vaultUri}secrets/${webhookSecretName}'
output webhookSecretName string = webhookSecretName
