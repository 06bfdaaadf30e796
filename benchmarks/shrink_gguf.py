"""Keep the first N transformer blocks of a GGUF model: a smaller twin with the same tokenizer and template.

Only for moving the embedded model to a machine that takes a few tens of MB (benchmarks/gpu_bundle.sh): the
twin answers in gibberish, but it loads, offloads and decodes like a model of its size, which is what a GPU
plumbing check needs. Usage: python shrink_gguf.py IN.gguf OUT.gguf N  (needs the `gguf` package).
"""

from __future__ import annotations

import re
import sys

import gguf


def shrink(src: str, dst: str, blocks: int) -> None:
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue  # the writer sets these itself
        value = blocks if field.name == f"{arch}.block_count" else field.contents()
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, field.types[0], sub_type=sub_type)
    kept = [t for t in reader.tensors
            if not ((m := re.match(r"blk\.(\d+)\.", t.name)) and int(m[1]) >= blocks)]
    for tensor in kept:
        writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes,
                               tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in kept:
        writer.write_tensor_data(tensor.data)
    writer.close()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    shrink(sys.argv[1], sys.argv[2], int(sys.argv[3]))
