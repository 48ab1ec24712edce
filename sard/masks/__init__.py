"""Defect masks: random ones from a seed and an area range, real ones from a bank, and their edits.

noise       Perlin noise and masks as DRAEM makes them; rotate
shapes      random_mask / mask_from_params for every kind (Perlin, ellipse, scratch, polygon, bank)
bank        MaskBank, its disk format in a model folder (write_bank, read_bank), bank placement
foreground  object_foreground / is_texture (Otsu); part_for_masks (on / off / auto), real_mask_share
edits       grow_mask, feather_weights, feather
"""
from sard.store.model_folder import BANK_DIR
from sard.masks.bank import (BANK_FORMAT, BANK_INDEX, BANK_MAX_BYTES, BANK_PLACEMENTS, MaskBank, read_bank,
                             write_bank)
from sard.masks.edits import feather, feather_weights, grow_mask
from sard.masks.foreground import ON_PART_MODES, Part, is_texture, object_foreground, part_for_masks, real_mask_share
from sard.masks.noise import perlin_mask, perlin_noise, rotate
from sard.masks.shapes import DEFAULTS, MASK_KINDS, MAX_ATTEMPTS, SUBPIXEL, mask_from_params, random_mask

__all__ = ["BANK_DIR", "BANK_FORMAT", "BANK_INDEX", "BANK_MAX_BYTES", "BANK_PLACEMENTS", "DEFAULTS", "MASK_KINDS",
           "MAX_ATTEMPTS", "MaskBank", "ON_PART_MODES", "Part", "SUBPIXEL", "feather", "feather_weights", "grow_mask",
           "is_texture", "mask_from_params", "object_foreground", "part_for_masks", "perlin_mask", "perlin_noise",
           "random_mask", "read_bank", "real_mask_share", "rotate", "write_bank"]
