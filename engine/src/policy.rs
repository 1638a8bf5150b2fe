//! Load a folder of `.rego` and data files, compile, smoke-evaluate and evaluate them with regorus.
