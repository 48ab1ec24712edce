from sard.data.readers import Sample, defect_types, list_dataset, normals
from sard.data.split import Split, split_defects

__all__ = ["Sample", "Split", "defect_types", "list_dataset", "normals", "split_defects"]
