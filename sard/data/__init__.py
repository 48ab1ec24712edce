from sard.data.readers import Sample, defect_types, list_dataset, normal_images, normals
from sard.data.split import Split, split_defects

__all__ = ["Sample", "Split", "defect_types", "list_dataset", "normal_images", "normals", "split_defects"]
