"""Plain-dict registries: each choice (loss, sampler, backbone, dataset, format) is one entry."""


def choose(registry, key_name, value):
    """registry[value], or a ConfigError naming the config key, the value and the allowed values."""
    if value in registry:
        return registry[value]
    # utils/config.py imports configs/defaults.py, which imports the registries' modules
    from utils.config import ConfigError

    raise ConfigError(f"{key_name} = {value!r} is not one of {tuple(registry)}")
