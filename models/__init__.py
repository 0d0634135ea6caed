from models.build import build_generator, build_model  # noqa: F401
