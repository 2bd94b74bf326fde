"""Built-in model families (each registered by the built-in plugin)."""
