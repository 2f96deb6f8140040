# azd postprovision hook on Windows: the same Python hook as postprovision.sh, with the project's .venv
# (make setup, or `py -3.11 -m venv .venv; .venv\Scripts\pip install -r requirements-dev.txt`) when it exists.
$ErrorActionPreference = 'Stop'
Set-Location (Join-Path $PSScriptRoot '..\..')
$venvPython = Join-Path (Get-Location) '.venv\Scripts\python.exe'
$python = if (Test-Path $venvPython) { $venvPython } else { 'python' }
& $python infra\hooks\postprovision.py
exit $LASTEXITCODE
