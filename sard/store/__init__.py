"""Models on disk: safetensors weights, the model folder's typed config, a run's resumable state."""
