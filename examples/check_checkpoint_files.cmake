# --keep prunes only this run's own checkpoints, and a run never starts below checkpoints of
# later epochs (cmake -DTRAIN=<train binary> -DDATA=<FashionDet folder> -DOUT=<dir> -P this file).
file(REMOVE_RECURSE ${OUT})
set(train ${TRAIN} --model detr --data ${DATA} --out ${OUT} --batch 4 --train-images 4 --val-images 2
    --image-size 64 --threads 2 --eval-every 100)
function(run)
  execute_process(COMMAND ${train} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "train ${ARGN} failed (${rc}):\n${out}\n${err}")
  endif()
endfunction()
function(expect_files)
  file(GLOB have RELATIVE ${OUT} ${OUT}/epoch_*.safetensors)
  list(SORT have)
  if(NOT "${have}" STREQUAL "${ARGN}")
    message(FATAL_ERROR "${OUT} holds [${have}], expected [${ARGN}]")
  endif()
endfunction()

run(--epochs 3 --keep 1)  # one step per epoch
expect_files(epoch_0003.safetensors)
# A file of another run: older by name, so pruning by name would delete it first.
file(COPY_FILE ${OUT}/epoch_0003.safetensors ${OUT}/epoch_0001.safetensors)
run(--epochs 5 --keep 1 --resume ${OUT}/epoch_0003.safetensors)
expect_files(epoch_0001.safetensors epoch_0003.safetensors epoch_0005.safetensors)

# Resuming from epoch 3 below epoch 5 would overwrite epoch 4 and leave 5 looking newer.
execute_process(COMMAND ${train} --epochs 4 --resume ${OUT}/epoch_0003.safetensors
                RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
if(NOT rc EQUAL 1 OR NOT err MATCHES "error: .*already holds checkpoints of later epochs.*epoch_0005.safetensors.*--overwrite")
  message(FATAL_ERROR "a resume below later checkpoints was not refused (${rc}):\n${err}")
endif()
expect_files(epoch_0001.safetensors epoch_0003.safetensors epoch_0005.safetensors)
run(--epochs 4 --resume ${OUT}/epoch_0003.safetensors --overwrite)
expect_files(epoch_0001.safetensors epoch_0003.safetensors epoch_0004.safetensors)
