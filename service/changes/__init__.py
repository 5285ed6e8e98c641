"""The layer under the features: how a change is made, audited and moves champions."""
