# Reference tests against PyTorch (Debian's python3-torch 1.13, CPU, with
# python3-numpy and python3-h5py for /usr/bin/python3), included from
# tests/CMakeLists.txt after DL_MPIRUN_STR is set. Label: reference.
#   reference.layers    every layer type's forward output, input gradient,
#                       parameter gradients and running statistics, and the
#                       softmax cross-entropy, against torch (ref_layers runs
#                       dltrain's side); relative tolerance 1e-4
#   reference.training  20 SGD steps of the cnn2 preset on Fashion-MNIST from
#                       the same initial parameters, on 1 and 2 ranks: the
#                       per-step losses against torch's; relative tolerance 1e-3
#   reference.checkpoint  checkpoints of the cnn2 and cnn2bn presets (written by
#                       ckpt_export) load into torch with the script that
#                       docs/checkpoints.md shows (tests/reference/
#                       load_checkpoint.py); torch's logits match dltrain's to
#                       1e-4 of the largest
#   reference.checkpoint_accuracy  short 2-rank runs of docs/examples/
#                       fashion-mlp.ini and of the cnn2bn preset; each final
#                       checkpoint, loaded and evaluated on the whole test set
#                       with load_checkpoint.py, gives summary.json's test
#                       accuracy (within 1 sample) and test loss (1e-4
#                       relative)
add_executable(ref_layers ${CMAKE_SOURCE_DIR}/tests/ref_layers.c)
target_link_libraries(ref_layers PRIVATE dl_models)

add_test(NAME reference.layers
         COMMAND /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tests/reference/check_layers.py
                 --ref-layers $<TARGET_FILE:ref_layers>
                 --dir ${CMAKE_CURRENT_BINARY_DIR}/scratch_reference_layers)
set_tests_properties(reference.layers PROPERTIES LABELS reference TIMEOUT 120)

add_test(NAME reference.training
         COMMAND /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tests/reference/check_training.py
                 --dltrain $<TARGET_FILE:dltrain>
                 --data ${CMAKE_CURRENT_BINARY_DIR}/data
                 --dir ${CMAKE_CURRENT_BINARY_DIR}/scratch_reference_training
                 --mpirun "${DL_MPIRUN_STR} ${MPIEXEC_NUMPROC_FLAG}")
set_tests_properties(reference.training PROPERTIES FIXTURES_REQUIRED fashion
                     LABELS "reference;mpi" TIMEOUT 300)

add_executable(ckpt_export ${CMAKE_SOURCE_DIR}/tests/ckpt_export.c)
target_link_libraries(ckpt_export PRIVATE dl_io)

add_test(NAME reference.checkpoint
         COMMAND /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tests/reference/check_checkpoint.py
                 --ckpt-export $<TARGET_FILE:ckpt_export>
                 --dir ${CMAKE_CURRENT_BINARY_DIR}/scratch_reference_checkpoint)
set_tests_properties(reference.checkpoint PROPERTIES LABELS reference TIMEOUT 120)

add_test(NAME reference.checkpoint_accuracy
         COMMAND /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tests/reference/check_checkpoint_accuracy.py
                 --dltrain $<TARGET_FILE:dltrain>
                 --data ${CMAKE_CURRENT_BINARY_DIR}/data
                 --dir ${CMAKE_CURRENT_BINARY_DIR}/scratch_reference_checkpoint_accuracy
                 --mpirun "${DL_MPIRUN_STR} ${MPIEXEC_NUMPROC_FLAG}")
set_tests_properties(reference.checkpoint_accuracy PROPERTIES FIXTURES_REQUIRED fashion
                     LABELS "reference;mpi" TIMEOUT 300)
