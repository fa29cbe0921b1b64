#pragma once
#include <napi.h>

namespace amr {
namespace bindings {
// Every export of the addon (bindings/addon.cpp); the module entry of each addon built from these sources calls it
// (bindings/module.cpp for am_radio.node, test/native/selftest_addon.cpp for the test-only addon).
Napi::Object init_addon(Napi::Env env, Napi::Object exports);
void init_io(Napi::Env env, Napi::Object exports);
void init_elementwise_ops(Napi::Env env, Napi::Object exports);
void init_reduce_ops(Napi::Env env, Napi::Object exports);
void init_random_ops(Napi::Env env, Napi::Object exports);
void init_norm_ops(Napi::Env env, Napi::Object exports);
void init_batchnorm_ops(Napi::Env env, Napi::Object exports);
void init_activation_ops(Napi::Env env, Napi::Object exports);
void init_gemm_ops(Napi::Env env, Napi::Object exports);
void init_optim_ops(Napi::Env env, Napi::Object exports);
void init_loss_ops(Napi::Env env, Napi::Object exports);
void init_sim_ops(Napi::Env env, Napi::Object exports);
void init_interpolate_ops(Napi::Env env, Napi::Object exports);
void init_attention_ops(Napi::Env env, Napi::Object exports);
void init_tokens_ops(Napi::Env env, Napi::Object exports);
void init_conv_ops(Napi::Env env, Napi::Object exports);
void init_layout_ops(Napi::Env env, Napi::Object exports);
void init_dist_ops(Napi::Env env, Napi::Object exports);
void init_nccl_ops(Napi::Env env, Napi::Object exports);
}  // namespace bindings
}  // namespace amr
