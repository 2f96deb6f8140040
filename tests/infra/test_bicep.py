"""infra/*.bicep parses, and the templates say what issue 10 and 11 ask: no keys or passwords anywhere, every
role on the app's identity, local auth off, Entra-only PostgreSQL, the alerts and the workbook."""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.bicep_model import INFRA, bicep_files, expression, load, parse, unwrap

# Built-in role definition ids: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path):
    tree = parse(path)

    assert tree.get("resources") or tree.get("modules"), f"{path.name} declares nothing"


def test_main_composes_every_module_and_each_exists():
    main = load("main.bicep")
    used = {module["detail"]["path"] for module in main.modules.values()}

    assert used == {f"app/{path.name}" for path in (INFRA / "app").glob("*.bicep")}
    for relative in used:
        assert (INFRA / relative).is_file()


def test_loaded_files_exist():
    loads = {
        (path.relative_to(INFRA).as_posix(), relative)
        for path in bicep_files()
        for relative in re.findall(r"load(?:Text|Json)Content\('([^']+)'\)", path.read_text())
    }

    # the abbreviations, every alert query and every workbook panel are loaded: none of them may be missing
    assert {file for file, _ in loads} >= {"main.bicep", "app/monitoring-alerts.bicep", "app/workbook.bicep"}
    assert len(loads) >= 1 + len(list((INFRA / "monitoring" / "queries").glob("*.kql")))
    assert [(file, relative) for file, relative in sorted(loads) if not ((INFRA / file).parent / relative).is_file()] == []


FORBIDDEN = [
    "listKeys",
    "listConnectionStrings",
    "listAccountSas",
    "listServiceSas",
    "AccountKey",
    "DefaultEndpointsProtocol",
    "SharedAccessSignature",
    "SharedAccessKey",
    "administratorLoginPassword",
    "administratorLogin",
    "InstrumentationKey=",
    "clientSecret",
    "D365_CLIENT_SECRET",
]


@pytest.mark.parametrize(
    "path", sorted(INFRA.rglob("*.bicep")) + sorted(INFRA.rglob("*.json")), ids=lambda p: str(p.relative_to(INFRA))
)
def test_no_key_connection_string_or_password(path):
    text = path.read_text()

    assert [word for word in FORBIDDEN if word.lower() in text.lower()] == []
    # The one connection string: Application Insights', which holds no secret (its local auth is off; the
    # identity signs telemetry through APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
    for line in text.splitlines():
        if "connectionstring" in line.lower():
            assert re.fullmatch(
                r"\s*APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights\.properties\.ConnectionString", line
            ), line
    assert not re.search(r"password\s*:\s*'", text, re.IGNORECASE)


def test_every_role_is_assigned_to_the_apps_identity_on_the_right_resource():
    rbac = load("app/rbac.bicep")
    roles = rbac.variable("roles")
    assignments = rbac.of_type("Microsoft.Authorization/roleAssignments")

    granted = set()
    for body in assignments.values():
        if body["properties"]["principalId"] != "identityPrincipalId":
            continue
        role_symbol = expression(body["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"])
        granted.add((roles[role_symbol.split(".", 1)[1]], body["scope"]))

    assert granted == {
        (STORAGE_BLOB_DATA_OWNER, "storage"),
        (STORAGE_QUEUE_DATA_CONTRIBUTOR, "storage"),
        (STORAGE_TABLE_DATA_CONTRIBUTOR, "storage"),
        (MONITORING_METRICS_PUBLISHER, "applicationInsights"),
        (KEY_VAULT_SECRETS_USER, "vault"),
    }
    main = load("main.bicep")
    assert expression(main.modules["rbac"]["config"]["params"]["identityPrincipalId"]) == "identity.outputs.principalId"


def test_rbac_is_granted_before_the_app_starts():
    api = load("main.bicep").modules["api"]["config"]

    assert "rbac" in api["dependsOn"]


def test_application_insights_and_storage_allow_no_local_or_shared_key_auth():
    insights = load("app/monitoring.bicep").of_type("Microsoft.Insights/components")
    storage = load("app/storage.bicep").of_type("Microsoft.Storage/storageAccounts")

    assert [
        {k.lower(): v for k, v in body["properties"].items()}["disablelocalauth"] for body in insights.values()
    ] == [True]
    assert [body["properties"]["allowSharedKeyAccess"] for body in storage.values()] == [False]


def test_storage_holds_the_lead_queue_and_its_poison_queue():
    storage = load("app/storage.bicep", {"leadQueueName": "lead-push"})
    queues = storage.of_type("Microsoft.Storage/storageAccounts/queueServices/queues")

    assert sorted(storage.resolve(body["name"]) for body in queues.values()) == ["lead-push", "lead-push-poison"]


def test_postgres_allows_entra_sign_in_only():
    postgres = load("app/postgres.bicep")
    (server,) = postgres.of_type("Microsoft.DBforPostgreSQL/flexibleServers").values()
    pgbouncer = postgres.of_type("Microsoft.DBforPostgreSQL/flexibleServers/configurations")

    assert server["properties"]["authConfig"]["passwordAuth"] == "Disabled"
    assert server["properties"]["authConfig"]["activeDirectoryAuth"] == "Enabled"
    assert "administratorLogin" not in server["properties"]
    assert [body["name"] for body in pgbouncer.values()] == ["pgbouncer.enabled"]


def test_the_apps_identity_is_no_postgres_administrator():
    """An Entra administrator can create roles and grant itself anything: the hook gives the app's role its
    rows instead (tests/infra/hook/)."""
    for path in bicep_files():
        template = load(str(path.relative_to(INFRA)))
        assert template.of_type("Microsoft.DBforPostgreSQL/flexibleServers/administrators") == {}, path.name
    call = load("main.bicep").modules["postgres"]["config"]["params"]
    assert not [name for name in call if "identity" in str(expression(call[name])).lower()]


def test_key_vault_uses_rbac_and_no_template_carries_the_webhook_secret():
    """The postprovision hook creates the secret through ARM when it is missing (tests/infra/hook/): a
    provision never replaces it, and nothing reads the vault's data plane, which vnetEnabled makes private."""
    vault = load("app/keyvault.bicep")
    (body,) = vault.of_type("Microsoft.KeyVault/vaults").values()

    assert body["properties"]["enableRbacAuthorization"] is True
    assert "accessPolicies" not in body["properties"]
    assert vault.tree["outputs"]["webhookSecretName"]["value"] == "webhookSecretName"
    assert vault.resolve("webhookSecretName") == "hunter-webhook-secret"
    for path in bicep_files():
        template = load(str(path.relative_to(INFRA)))
        assert template.of_type("Microsoft.KeyVault/vaults/secrets") == {}, path.name
        secure = [name for name, p in (template.tree.get("parameters") or {}).items()
                  if {"type": "secure"} in [{"type": d["type"]} for d in p.get("decorators", [])]]
        assert secure == [], path.name
    assert "secretOrRandomPassword" not in (INFRA / "main.parameters.json").read_text()


ALERT_QUERIES = {
    "alert-poison-queue.kql",
    "alert-failed-share.kql",
    "alert-queue-stalled.kql",
    "alert-dataverse-throttling.kql",
    "alert-pipeline-paused.kql",
}


def test_each_alert_runs_its_query_file_and_notifies_the_action_group():
    alerts = load("app/monitoring-alerts.bicep")
    rules = alerts.of_type("Microsoft.Insights/scheduledQueryRules")
    (group,) = alerts.of_type("Microsoft.Insights/actionGroups").values()

    files = set()
    for body in rules.values():
        (criterion,) = body["properties"]["criteria"]["allOf"]
        files.add(criterion["query"]["function"]["parameters"]["file_path"].rsplit("/", 1)[-1])
        assert expression(body["properties"]["actions"]["actionGroups"]) == ["actionGroup.id"]
        assert body["properties"]["scopes"] == ["applicationInsightsId"]
    assert files == ALERT_QUERIES
    assert "alertEmail" in str(group["properties"]["emailReceivers"])


def test_the_failed_share_and_throttling_alerts_use_their_parameters():
    alerts = load("app/monitoring-alerts.bicep")
    rules = alerts.of_type("Microsoft.Insights/scheduledQueryRules")

    failed = rules["failedPushShare"]["properties"]
    throttling = rules["dataverseThrottling"]["properties"]
    assert (failed["windowSize"], failed["criteria"]["allOf"][0]["threshold"]) == (
        "PT15M",
        "failedSharePercentThreshold",
    )
    periods = throttling["criteria"]["allOf"][0]["failingPeriods"]
    assert periods == {"numberOfEvaluationPeriods": "throttledWindows", "minFailingPeriodsToAlert": "throttledWindows"}


def test_the_pause_alert_is_critical_and_runs_every_minute_over_five_minutes_per_reason():
    alerts = load("app/monitoring-alerts.bicep")
    paused = alerts.of_type("Microsoft.Insights/scheduledQueryRules")["pipelinePaused"]["properties"]
    (criterion,) = paused["criteria"]["allOf"]

    # an event exported within seconds, ingested within ~3 minutes, seen by the next run: inside 5 minutes
    assert (paused["evaluationFrequency"], paused["windowSize"], paused["severity"]) == ("PT1M", "PT5M", 0)
    assert (criterion["metricMeasureColumn"], criterion["timeAggregation"]) == ("paused", "Maximum")
    assert (criterion["operator"], criterion["threshold"]) == ("GreaterThan", 0)
    assert [d["name"] for d in criterion["dimensions"]] == ["reason"]
    assert paused["autoMitigate"] is True


def test_every_alert_rule_uses_the_same_ga_api_version():
    text = (INFRA / "app" / "monitoring-alerts.bicep").read_text()

    assert set(re.findall(r"'Microsoft\.Insights/scheduledQueryRules@([\w-]+)'", text)) == {"2023-12-01"}


def test_the_workbook_shows_every_panel_from_its_query_file():
    workbook = load("app/workbook.bicep")
    (body,) = workbook.of_type("Microsoft.Insights/workbooks").values()
    text = (INFRA / "app" / "workbook.bicep").read_text()

    assert body["kind"] == "shared"
    assert body["properties"]["sourceId"] == "applicationInsightsId"
    panels = re.findall(r"loadTextContent\('\.\./monitoring/queries/(workbook-[a-z-]+\.kql)'\)", text)
    assert sorted(panels) == sorted(path.name for path in (INFRA / "monitoring" / "queries").glob("workbook-*.kql"))
    assert {
        "workbook-throughput.kql",
        "workbook-outcomes.kql",
        "workbook-duration.kql",
        "workbook-queue-depth.kql",
        "workbook-failed-leads.kql",
        "workbook-dataverse-errors.kql",
        "workbook-pipeline-paused.kql",
        "workbook-crm-states.kql",
        "workbook-conversion.kql",
    } <= set(panels)
    main = load("main.bicep")
    assert {"alerts", "workbook"} <= set(main.modules)


# The regions offering Flex Consumption, as Microsoft's quickstart allows them for `location`
# (Azure-Samples/functions-quickstart-python-http-azd, infra/main.bicep).
QUICKSTART_REGIONS = """
australiaeast australiasoutheast brazilsouth canadacentral centralindia centralus eastasia eastus eastus2
eastus2euap francecentral germanywestcentral italynorth japaneast koreacentral northcentralus northeurope
norwayeast southafricanorth southcentralus southeastasia southindia spaincentral swedencentral uaenorth uksouth
ukwest westcentralus westeurope westus westus2 westus3
""".split()


def _allowed(parameter: dict) -> list | None:
    return next((d["argument"] for d in parameter.get("decorators", []) if d["type"] == "allowed"), None)


def test_location_is_limited_to_the_regions_that_offer_flex_consumption():
    location = load("main.bicep").tree["parameters"]["location"]

    assert _allowed(location) == QUICKSTART_REGIONS
    assert {"type": "metadata", "argument": {"azd": {"type": "location"}}} in location["decorators"]


def test_postgres_has_a_location_of_its_own_defaulting_to_the_apps():
    main = load("main.bicep")
    postgres_location = main.tree["parameters"]["postgresLocation"]
    placed = main.modules["postgres"]["config"]["params"]["location"]["operator"]

    assert (postgres_location["type"], postgres_location["default"], _allowed(postgres_location)) == ("string", "", None)
    assert placed["type"] == "conditional"
    assert placed["operands"]["condition"] == {"function": {"type": "empty", "parameters": {"item_to_test": "postgresLocation"}}}
    assert (placed["operands"]["true_value"], placed["operands"]["false_value"]) == ("location", "postgresLocation")
    others = [unwrap(module["config"]) for name, module in main.modules.items() if name != "postgres"]
    assert {expression(module["params"].get("location", "location")) for module in others} == {"location"}
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["postgresLocation"] == {"value": "${AZURE_POSTGRES_LOCATION=}"}


# --- private networking (vnetEnabled) ------------------------------------------------------------


def test_vnet_enabled_is_the_default_and_azd_can_turn_it_off():
    main = load("main.bicep")
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]

    assert (main.tree["parameters"]["vnetEnabled"]["type"], main.tree["parameters"]["vnetEnabled"]["default"]) == (
        "bool",
        True,
    )
    assert parameters["vnetEnabled"] == {"value": "${VNET_ENABLED=true}"}


def test_the_network_and_the_private_endpoints_exist_only_with_vnet_enabled():
    main = load("main.bicep")

    conditional = {name: module["config"].get("condition") for name, module in main.modules.items()}
    assert {name for name, condition in conditional.items() if condition == "vnetEnabled"} == {
        "network",
        "privateEndpoints",
    }
    endpoints = unwrap(main.modules["privateEndpoints"]["config"])["params"]
    assert {key: expression(endpoints[key]) for key in ("storageAccountId", "keyVaultId", "postgresServerId")} == {
        "storageAccountId": "storage.outputs.id",
        "keyVaultId": "keyVault.outputs.id",
        "postgresServerId": "postgres.outputs.id",
    }
    # the app starts only once storage and the vault are reachable the only way they are
    assert {"rbac", "privateEndpoints"} <= set(unwrap(main.modules["api"]["config"])["dependsOn"])


def test_storage_queue_blob_table_key_vault_and_postgres_each_have_an_endpoint_and_a_dns_zone():
    template = load("app/private-endpoints.bicep")
    endpoints = template.variable("endpoints")
    zones = unwrap(template.resources["zone"]["config"])
    links = unwrap(template.resources["link"]["config"])
    groups = unwrap(template.resources["zoneGroup"]["config"])

    assert [(e["groupId"], e["targetId"]) for e in endpoints] == [
        ("blob", "storageAccountId"),
        ("queue", "storageAccountId"),
        ("table", "storageAccountId"),
        ("vault", "keyVaultId"),
        ("postgresqlServer", "postgresServerId"),
    ]
    assert [template.resolve(e["dnsZoneName"]) for e in endpoints] == [
        "privatelink.blob.<environment().suffixes.storage>",
        "privatelink.queue.<environment().suffixes.storage>",
        "privatelink.table.<environment().suffixes.storage>",
        "privatelink.vaultcore.azure.net",
        "privatelink.postgres.database.azure.com",
    ]
    for symbol in ("zone", "link", "privateEndpoint", "zoneGroup"):
        assert template.resources[symbol]["config"]["loop_type"]["detail"]["array_name"] == "endpoints", symbol
    assert zones["location"] == "global"
    assert links["properties"] == {"virtualNetwork": {"id": "vnetId"}, "registrationEnabled": False}
    zone_id = groups["properties"]["privateDnsZoneConfigs"][0]["properties"]["privateDnsZoneId"]["operator"]
    assert (zone_id["operands"]["operand_1"]["operator"]["operands"], zone_id["operands"]["operand_2"]) == (
        {"operand_1": "zone", "operand_2": "i"},
        "id",
    )


def test_the_function_app_integrates_with_a_subnet_delegated_to_flex_consumption():
    network = load("app/network.bicep")
    (vnet,) = network.of_type("Microsoft.Network/virtualNetworks").values()
    subnets = {network.resolve(subnet["name"]): subnet["properties"] for subnet in vnet["properties"]["subnets"]}
    (site,) = load("app/api.bicep").of_type("Microsoft.Web/sites").values()
    call = unwrap(load("main.bicep").modules["api"]["config"])["params"]

    assert subnets["app"]["delegations"][0]["properties"]["serviceName"] == "Microsoft.App/environments"
    assert subnets["app"]["defaultOutboundAccess"] is True  # Dataverse, Entra ID, Application Insights
    assert subnets["private-endpoints"]["privateEndpointNetworkPolicies"] == "Disabled"
    assert site["properties"]["virtualNetworkSubnetId"]["operator"]["operands"]["false_value"] == (
        "virtualNetworkSubnetId"
    )
    chosen = call["virtualNetworkSubnetId"]["operator"]["operands"]
    assert (chosen["condition"], expression(chosen["true_value"]), chosen["false_value"]) == (
        "vnetEnabled",
        "network.outputs.appSubnetId",
        "",
    )


@pytest.mark.parametrize(
    ("module", "resource_type"),
    [
        ("storage", "Microsoft.Storage/storageAccounts"),
        ("keyVault", "Microsoft.KeyVault/vaults"),
        ("postgres", "Microsoft.DBforPostgreSQL/flexibleServers"),
    ],
)
def test_public_network_access_is_off_with_vnet_enabled(module, resource_type):
    main = load("main.bicep")
    path = main.modules[module]["detail"]["path"]
    assert main.variable("publicNetworkAccess") == {
        "operator": {
            "type": "conditional",
            "operands": {"condition": "vnetEnabled", "true_value": "Disabled", "false_value": "Enabled"},
        }
    }
    assert unwrap(main.modules[module]["config"])["params"]["publicNetworkAccess"] == "publicNetworkAccess"

    private = load(path, {"publicNetworkAccess": "Disabled"})
    (body,) = private.of_type(resource_type).values()
    properties = body["properties"]
    assert private.resolve(properties.get("network", properties)["publicNetworkAccess"]) == "Disabled"
    if "networkAcls" in properties:  # storage and Key Vault: deny whatever is not a private endpoint
        default_action = properties["networkAcls"]["defaultAction"]["operator"]["operands"]
        assert (default_action["condition"], default_action["true_value"]) == ("privateOnly", "Deny")
        assert private.variable("privateOnly") == {
            "operator": {"type": "equals", "operands": {"operand_1": "publicNetworkAccess", "operand_2": "Disabled"}}
        }


def test_azure_services_are_admitted_to_postgres_only_without_the_virtual_network():
    postgres = load("app/postgres.bicep")
    (rule,) = [r for r in postgres.resources.values() if r["type"].endswith("/firewallRules")]
    main = load("main.bicep")

    assert rule["config"]["condition"] == {
        "operator": {"type": "equals", "operands": {"operand_1": "publicNetworkAccess", "operand_2": "Enabled"}}
    }
    assert rule["config"]["config"]["properties"] == {"startIpAddress": "0.0.0.0", "endIpAddress": "0.0.0.0"}
    # the hook restores what the template wants after opening the server to the deployer
    assert expression(main.tree["outputs"]["AZURE_POSTGRES_PUBLIC_NETWORK_ACCESS"]["value"]) == (
        "postgres.outputs.publicNetworkAccess"
    )
    assert postgres.tree["outputs"]["publicNetworkAccess"]["value"] == "publicNetworkAccess"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_resource_uses_a_ga_api_version(path):
    versions = {resource["type"]: resource["api_version"] for resource in (parse(path).get("resources") or {}).values()}

    assert versions, f"{path.name} declares no resource"
    assert {kind: version for kind, version in versions.items() if "preview" in version} == {}
