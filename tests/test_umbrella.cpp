// Every public header together in one translation unit: catches name clashes between families
// (each family's tests include only their own headers).
#include "detr/detr.hpp"
#include "detr/data/coco.hpp"
#include "detr/data/loader.hpp"
#include "detr/data/transforms.hpp"
#include "detr/data/fashion_det.hpp"
#include "detr/eval/coco_eval.hpp"
#include "detr/eval/draw.hpp"
#include "detr/eval/postprocess.hpp"
#include "detr/data/coco_folder.hpp"
#include "detr/train/chart.hpp"
#include "detr/train/metrics_log.hpp"
#include "detr/train/progress.hpp"
#include "detr/train/trainer.hpp"
#include "helpers.hpp"

TEST_CASE("the umbrella header and the data / eval headers compile together", "[umbrella]") {
  detr::MultiheadAttention<8, 2> mha;
  detr::BoxTarget<float> t;
  REQUIRE(detr::named_parameters(mha).size() == 4);
  REQUIRE(t.size() == 0);
}
