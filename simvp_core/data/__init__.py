"""Moving MNIST data, one job a module: the data folder and its MNIST files (`mnist`), sequences
generated on the fly and their augmentation (`moving`), the fixed validation and test sets (`sets`).

The names the trainer, the search and the benchmarks use are importable from here;
`python -m simvp_core.data fetch` downloads the files (simvp_core.fetch).
"""

from simvp_core.data.mnist import (
                                   ENV_DATA_DIR,
                                   LINE_CHARS,
                                   MNIST_MD5,
                                   MNIST_RAW,
                                   SAMPLE,
                                   SAMPLE_FILE,
                                   TEST_SEQ_FILE,
                                   UNPACKED_MD5,
                                   ChecksumError,
                                   DataNotFoundError,
                                   check_md5,
                                   file_md5,
                                   fit_paths,
                                   has_mnist,
                                   has_standard_test_set,
                                   is_sample,
                                   load_mnist,
                                   resolve_data_dir,
)
from simvp_core.data.moving import (
                                   FRAME_SIZE,
                                   INPUT_FRAMES,
                                   NUM_FRAMES,
                                   augment,
                                   bounce_positions,
                                   generate_sequences,
                                   generate_sequences_uint8,
                                   split_frames,
                                   to_float,
)
from simvp_core.data.sets import TEST_SET_STANDARD, load_test_set, make_fixed_set, test_set_label

__all__ = ["DataNotFoundError", "ChecksumError", "resolve_data_dir", "is_sample", "has_mnist",
           "file_md5", "check_md5", "load_mnist", "bounce_positions", "generate_sequences",
           "generate_sequences_uint8", "to_float", "has_standard_test_set", "augment", "split_frames",
           "make_fixed_set", "load_test_set", "test_set_label", "TEST_SET_STANDARD", "TEST_SEQ_FILE", "SAMPLE",
           "SAMPLE_FILE", "ENV_DATA_DIR", "MNIST_MD5", "UNPACKED_MD5", "MNIST_RAW", "fit_paths", "LINE_CHARS",
           "NUM_FRAMES", "INPUT_FRAMES", "FRAME_SIZE"]
