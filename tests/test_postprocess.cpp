// Post-processing against the reference PostProcess modules (tests/reference/make_set_criterion.py).
#include "detr/eval/postprocess.hpp"
#include "parity.hpp"

using namespace detr;
using detr::test::reference;

namespace {
std::vector<ImageSize> sizes(const io::SafetensorsFile& ref) {
  auto hw = ref.get<float>("image_sizes");
  std::vector<ImageSize> s;
  for (int64_t b = 0; b < hw.dim(0); ++b) s.push_back({int64_t(hw.at({b, 0})), int64_t(hw.at({b, 1}))});
  return s;
}
template <class T>
Tensor<T> stack(const std::vector<ImageDetections<float>>& d, Tensor<T> ImageDetections<float>::*member) {
  Shape s = (d[0].*member).shape();
  Shape all{int64_t(d.size())};
  for (int i = 0; i < s.rank(); ++i) all.push_back(s[i]);
  auto out = Tensor<T>::empty(all);
  for (size_t b = 0; b < d.size(); ++b) out[int64_t(b)].copy_(d[b].*member);
  return out;
}
}  // namespace

TEST_CASE("DETR post-processing matches PostProcess", "[postprocess][parity]") {
  const auto& ref = reference("set_criterion");
  auto d = postprocess_softmax(ref.get<float>("detr.layer2.logits"), ref.get<float>("detr.layer2.boxes"), sizes(ref));
  REQUIRE_ALLCLOSE(stack<float>(d, &ImageDetections<float>::scores), ref.get<float>("post_detr.scores"), 1e-5, 1e-6);
  REQUIRE(stack<int64_t>(d, &ImageDetections<float>::labels).to_vector() == ref.get<int64_t>("post_detr.labels").to_vector());
  REQUIRE_ALLCLOSE(stack<float>(d, &ImageDetections<float>::boxes), ref.get<float>("post_detr.boxes"), 1e-5, 1e-4);
}

TEST_CASE("Deformable DETR top-100 post-processing matches PostProcess", "[postprocess][parity]") {
  const auto& ref = reference("set_criterion");
  auto d = postprocess_topk(ref.get<float>("deformable.layer2.logits"), ref.get<float>("deformable.layer2.boxes"), sizes(ref), 100);
  REQUIRE_ALLCLOSE(stack<float>(d, &ImageDetections<float>::scores), ref.get<float>("post_deformable.scores"), 1e-5, 1e-6);
  REQUIRE(stack<int64_t>(d, &ImageDetections<float>::labels).to_vector() == ref.get<int64_t>("post_deformable.labels").to_vector());
  REQUIRE_ALLCLOSE(stack<float>(d, &ImageDetections<float>::boxes), ref.get<float>("post_deformable.boxes"), 1e-5, 1e-4);
}

TEST_CASE("post-processing errors", "[postprocess]") {
  auto logits = Tensor<float>::zeros({2, 5, 3}), boxes = Tensor<float>::zeros({2, 5, 4});
  REQUIRE_THROWS_WITH(postprocess_softmax(logits, boxes, {{10, 10}}), Catch::Contains("1 image sizes for a batch of 2"));
  REQUIRE_THROWS_WITH(postprocess_topk(logits, boxes, {{10, 10}, {5, 5}}, 16), Catch::Contains("k = 16"));
  REQUIRE_THROWS_WITH(postprocess_topk(logits, Tensor<float>::zeros({2, 5, 2}), {{1, 1}, {1, 1}}), Catch::Contains("[2, 5, 2]"));
}
