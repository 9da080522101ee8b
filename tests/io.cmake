# io/ tests, included from tests/CMakeLists.txt: the dataset reader and IDX
# converter unit test, the checkpoint file test, and the dltrain-data
# command-line test (which converts the real Fashion-MNIST test set and fails
# if the dataset package is missing).
add_executable(test_dataset ${CMAKE_SOURCE_DIR}/tests/test_dataset.c)
target_include_directories(test_dataset PRIVATE ${HDF5_INCLUDE_DIRS})
target_compile_definitions(test_dataset PRIVATE ${HDF5_DEFINITIONS})
target_link_libraries(test_dataset PRIVATE dl_io ${HDF5_C_LIBRARIES} ZLIB::ZLIB m)
add_test(NAME io.dataset COMMAND test_dataset ${CMAKE_CURRENT_BINARY_DIR}/scratch_io)
set_tests_properties(io.dataset PROPERTIES LABELS unit)

add_test(NAME io.dltrain_data_cli
         COMMAND sh ${CMAKE_SOURCE_DIR}/tests/test_dltrain_data_cli.sh
                 $<TARGET_FILE:dltrain-data> ${CMAKE_CURRENT_BINARY_DIR}/scratch_io_cli)
set_tests_properties(io.dltrain_data_cli PROPERTIES LABELS unit)

# The .npy, CSV and token converters end to end (inputs made and outputs
# checked with /usr/bin/python3's numpy and h5py), bad inputs, and a tiny MLP
# trained on a float dataset converted from CSV.
add_test(NAME io.dltrain_data_convert
         COMMAND /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tests/test_convert.py
                 --dltrain-data $<TARGET_FILE:dltrain-data> --dltrain $<TARGET_FILE:dltrain>
                 --dir ${CMAKE_CURRENT_BINARY_DIR}/scratch_io_convert)
set_tests_properties(io.dltrain_data_convert PROPERTIES LABELS unit TIMEOUT 300)

# Checkpoint files: round trip, retention, corruption and fallback, failed writes.
add_executable(test_checkpoint ${CMAKE_SOURCE_DIR}/tests/test_checkpoint.c)
target_include_directories(test_checkpoint PRIVATE ${HDF5_INCLUDE_DIRS})
target_compile_definitions(test_checkpoint PRIVATE ${HDF5_DEFINITIONS})
target_link_libraries(test_checkpoint PRIVATE dl_io ${HDF5_C_LIBRARIES})
add_test(NAME io.checkpoint COMMAND test_checkpoint ${CMAKE_CURRENT_BINARY_DIR}/scratch_checkpoint)
set_tests_properties(io.checkpoint PROPERTIES LABELS unit)

# The dataset reader's two paths, pread and HDF5: byte-identical batches in
# every index order on every storage kind, the same label errors, truncated
# files, and the Fashion-MNIST test set as dltrain-data writes it.
add_executable(test_dataset_pread ${CMAKE_SOURCE_DIR}/tests/test_dataset_pread.c)
target_include_directories(test_dataset_pread PRIVATE ${HDF5_INCLUDE_DIRS})
target_compile_definitions(test_dataset_pread PRIVATE ${HDF5_DEFINITIONS})
target_link_libraries(test_dataset_pread PRIVATE dl_io ${HDF5_C_LIBRARIES} m)
add_test(NAME io.dataset_pread
         COMMAND test_dataset_pread ${CMAKE_CURRENT_BINARY_DIR}/scratch_io_pread
                 ${CMAKE_CURRENT_BINARY_DIR}/data/fashion-test.h5)
set_tests_properties(io.dataset_pread PROPERTIES LABELS unit FIXTURES_REQUIRED fashion)
