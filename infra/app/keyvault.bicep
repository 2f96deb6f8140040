// Key Vault with Azure RBAC (no access policies) holding the Hunter webhook secret.
param name string
param location string = resourceGroup().location
param tags object = {}
param webhookSecretName string = 'hunter-webhook-secret'

@secure()
@description('Shared secret Hunter signs webhook bodies with (azd: generated once, then read back from this vault).')
param webhookSecret string

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
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource webhookSecretResource 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: webhookSecretName
  properties: {
    value: webhookSecret
    contentType: 'text/plain'
  }
}

output name string = vault.name
output id string = vault.id
// Versionless: the app setting's Key Vault reference follows rotations (resolved again within a day, or on restart).
output webhookSecretUri string = '${vault.properties.vaultUri}secrets/${webhookSecretName}'
