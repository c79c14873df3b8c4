"""The network: Conv2D / BatchNormalization / MaxPool2D / Dropout blocks, global pooling head.

The model takes uint8-valued RGB images (batch, height, width, 3) and returns logits; the
softmax, with the card's prior-shift offset and temperature (``ml.calibration``), is applied by
``ml.inference``, which runs the network with its BatchNormalization folded into the convolutions
(``fold_batchnorm``).
"""

import numpy as np

CAM_LAYER = "cam_features"  # the last convolutional feature map, used by Grad-CAM

PRESETS = {
    # input size is (width, height)
    # ~19 s an epoch on an idle 2-core CPU with native bfloat16 (Xeon AMX, AMD AVX-512 BF16);
    # the time budget stops it earlier on a slower or busier machine, with the learning rate
    # annealed all the same. weight_decay is AdamW's (applied as lr * weight_decay per step,
    # kernels only); average_decay is the per-batch decay of the weights' moving average;
    # label_smoothing spreads that share of each target evenly over the seven classes (0.1 over
    # 0.0: validation AUC +0.004 to +0.009 and accuracy +0.013 per epoch in the second half of
    # training; 0.2 did worse); the fitted temperature undoes its underconfidence.
    # Tried against this recipe on the same split, epoch by epoch, and not taken (its figures
    # below, 0.717, 0.798 and 0.914, are the shipped weights calibrated as before the 2026-12-06
    # prior-shift offset, as the others were; the card's 0.715, 0.811, 0.915 are with it):
    # colour jitter halved (AUC +0.012 over epochs 26-50, level after 75, balanced accuracy
    # -0.018: it overfits sooner); Shades of Gray colour constancy (AUC -0.008: the cast
    # carries information here);
    # mixup 0.2 (level on AUC up to epoch 74); a 10-epoch finish at 192x144 (level); a wider
    # tail, widths (16, 32, 64, 192, 384) and convs (1, 2, 2, 2, 2), 2.5 M parameters: 102 epochs
    # in the time budget on a busy machine, then by `ml compare --split val` against this one
    # AUC -0.000 [-0.009, +0.008], accuracy -0.016 [-0.032, 0.000], balanced accuracy +0.033
    # [-0.010, +0.084] (four more of 17 dermatofibromas), at 1.6x the inference time; an added
    # malignant-vs-benign cross-entropy on logsumexp(malignant logits) - logsumexp(benign ones),
    # weight 1 (AUC -0.005 over epochs 26-50 and -0.008 over 51-67, balanced accuracy -0.04;
    # stopped at epoch 67); the whole run at 192x144 (1.44x the compute: 125 epochs in the time
    # budget, AUC +0.003 over epochs 35-80, then behind; by `ml compare --split val` AUC -0.002
    # [-0.010, +0.006], accuracy +0.007 [-0.008, +0.021], balanced accuracy -0.023 [-0.056,
    # +0.006]); eight test-time views (the four flips, and each turned 45 degrees) on this
    # model: AUC +0.003, accuracy +0.006, balanced accuracy -0.005, at twice the inference time;
    # Dropout 0.1 after each max-pooling (2026-12-02, AMD EPYC with AVX-512 BF16, 140 epochs in the
    # time budget): by `ml compare --split val` accuracy +0.014 [-0.001, +0.031], balanced
    # accuracy -0.002 [-0.038, +0.036], AUC -0.003 [-0.013, +0.007]; an ensemble of two networks
    # of about half this one's compute each, widths (12, 24, 48, 88, 176), each from its own
    # initial weights and fitted on its own loss, logits averaged (2026-12-03, Xeon with AMX):
    # 1.35x the time an epoch (two thin branches use the CPU less well), so 92 epochs in the time
    # budget; balanced accuracy 0.696, accuracy 0.801, AUC 0.906 against this recipe's 0.717,
    # 0.798, 0.914; the average beat its better member by 0.0003 AUC (members 0.906 and 0.902):
    # trained on the same batches, the two erred alike. Nor two full-size ones: this recipe run
    # again with initial weights and batches from seed 1 (same split, 150 epochs, 49 minutes)
    # gave 0.698, 0.795, 0.904, and averaging its logits with the shipped model's 0.703, 0.810,
    # 0.9135 against the shipped 0.717, 0.798, 0.914: accuracy up, AUC not. Nor test-time
    # views at two scales (2026-12-03, no retraining: this model's weights in the network built
    # for another input size, four flips each, temperature and decision rule refitted on the
    # split): 176x132 alone 0.707 / 0.758 / 0.908, 192x144 0.689 / 0.772 / 0.913, 144x108
    # 0.684 / 0.793 / 0.902; logits of 160x120 and 192x144 averaged 0.707 / 0.804 / 0.916 against
    # 0.717 / 0.798 / 0.914 at 2.4x the inference time; of 144, 160 and 176 0.704 / 0.804 / 0.912.
    # Nor a crop around the lesion (2026-12-04, AMD EPYC with AVX-512 BF16, 18 s an epoch): the
    # dark region by Otsu's threshold inside the dermatoscope's field, widened 1.3x, 4:3, at least
    # 0.45 of the photo's width, resized to 160x120 in training and inference alike, so a small
    # lesion is seen at up to 2.2x the detail. Against this recipe's run epoch by epoch: AUC
    # +0.005 over epochs 1-40, level over 41-70, then flat at 0.898 while this recipe's rose to
    # 0.909 (-0.011 over 91-120); balanced accuracy -0.04 from epoch 60 (0.61-0.65 against
    # 0.68-0.69); stopped at epoch 120. Zoomed in, it fits sooner and loses the skin around it.
    # Nor cutout (same day and machine, 20 s an epoch): half the training images get one
    # rectangle of 10-35% of each side filled with their mean colour; 150 epochs in 52 minutes,
    # best epoch 149: balanced accuracy 0.705 [0.645-0.757], accuracy 0.802 [0.778-0.824], AUC
    # 0.916 [0.897-0.934] against this recipe's 0.717, 0.798, 0.914: within run-to-run noise
    # (per-epoch AUC +0.004 over epochs 31-60, then 0.002-0.007 behind through epoch 150).
    # Nor a concatenated average- and max-pooling head (2026-12-04, Xeon, 17 s an epoch, 150
    # epochs in 44 minutes, best epoch 96): balanced accuracy 0.684, accuracy 0.805, AUC 0.907
    # against 0.717, 0.798, 0.914; per-epoch AUC level to epoch 40, then 0.004-0.015 behind.
    # Nor SGD with Nesterov momentum 0.9 in AdamW's place, learning rate 0.05, weight decay
    # 0.005 (same day and machine, 150 epochs in 45 minutes): 0.687, 0.790, 0.912; per-epoch
    # AUC +0.001 to +0.005 up to epoch 80, then 0.001-0.006 behind.
    # Nor a second 16-filter convolution in the first block, convs (2, 2, 2, 2, 1): more of the
    # network at 80x60, where the finest pigment structure is (2026-12-04, AMD EPYC with AVX-512
    # BF16, 22 s an epoch, 1.2x this recipe's): per-epoch AUC level to epoch 45 (+0.001), then
    # behind by 0.006 over epochs 46-60, 0.012 over 61-75 and 0.016 over 76-90 (0.889 against
    # 0.905), accuracy and balanced accuracy level; stopped at epoch 91.
    # Nor batches of 32 instead of 64, learning rate 2e-3, average decay 0.999 per batch (the same
    # horizon in epochs) (2026-12-05, AMD EPYC with AVX-512 BF16, 19 s an epoch, 150 epochs in 47
    # minutes, best epoch 97): balanced accuracy 0.711, accuracy 0.793, AUC 0.907 against 0.717,
    # 0.798, 0.914; per-epoch AUC +0.014 over epochs 1-15, level to 60, then 0.004-0.008 behind.
    # Nor weight decay 0.02 instead of 0.05 (2026-12-05, Xeon with AMX, 17 s an epoch, 150 epochs
    # in 43 minutes, best epoch 80): balanced accuracy 0.708, accuracy 0.780, AUC 0.909 against
    # 0.717, 0.798, 0.914; per-epoch AUC +0.002 to +0.007 over epochs 31-60, level to 90, then
    # 0.001-0.003 behind (0.909 at the end against 0.911). Weight decay 0.1 ran behind on AUC by
    # 0.003-0.007 from epoch 16 to 72, where that run was lost: 0.05 sits between the two.
    # Nor learning rate 6e-3 instead of 3e-3 (2026-12-05, Xeon with AMX, 18 s an epoch):
    # per-epoch AUC 0.005 behind in every 15-epoch block from epoch 16 to 104 (0.905 against
    # 0.910 over epochs 91-104), balanced accuracy 0.010-0.031 behind; stopped at epoch 104.
    # Nor focal loss (keras CategoricalFocalCrossentropy, gamma 2, alpha 1, the same label
    # smoothing and class weights) in the cross-entropy's place (same day and machine): per-epoch
    # AUC 0.003-0.006 behind over epochs 1-45, then 0.010 over 46-60 and 0.012 over 61-71,
    # balanced accuracy 0.011-0.021 behind after epoch 45; stopped at epoch 71.
    # Nor average_decay 0.999 instead of 0.998 (a moving average over about 12 epochs, not 6;
    # same day and machine): per-epoch AUC level to epoch 60, then 0.005 behind over 61-75,
    # 0.008 over 76-90 and 0.009 over 91-95 (0.901 against 0.910); stopped at epoch 95.
    # Nor weight_power 0.3 instead of 0.5 (class weights from nv 0.76 to df 2.24, not 0.59 to
    # 3.62; same day and machine, 150 epochs in 47 minutes, best epoch 120): balanced accuracy
    # 0.703, accuracy 0.802, AUC 0.916; by `ml compare --split val` against this recipe accuracy
    # +0.005 [-0.008, +0.017], balanced accuracy -0.014 [-0.043, +0.011], AUC +0.002 [-0.004,
    # +0.008]; per-epoch AUC within 0.006 of this recipe's throughout.
    # Nor, without retraining, a new head on this model's features (2026-12-05, AVX2 EPYC; the
    # 256 pooled features, four views averaged, of the 7,018 training photos; temperature and
    # decision rule refitted on validation for each): logistic regression with the class
    # weights, C 0.001 to 1: balanced accuracy 0.62-0.71, accuracy 0.78-0.81, AUC 0.900-0.917;
    # its logits added to the shipped head's (weight 0.5 or 1): 0.68-0.71 / 0.78-0.82 /
    # 0.909-0.917; a class-weighted vote of the 10, 30 or 100 nearest training photos (cosine)
    # added as log-probabilities: 0.710-0.714 / 0.804-0.821 / 0.912-0.915, against the shipped
    # 0.717 / 0.798 / 0.914. All within the seed noise: the features hold no more than the head
    # reads from them.
    # Nor every nevus in every epoch, class_cap None (7,018 images an epoch, not 5,315; 2026-12-06,
    # Xeon with AMX, 24 s an epoch, so about 135 epochs in the time budget, the learning rate
    # annealed on elapsed time): per-epoch AUC level to epoch 60, then behind by 0.004 over
    # epochs 61-75, 0.007 over 76-90, 0.010 over 91-105 and 0.011 over 106-112 (0.898 against
    # 0.909), accuracy level, balanced accuracy 0.027-0.044 behind after epoch 90; stopped at 112.
    # Nor the wider tail above run again on this machine (same day, 21-33 s an epoch, 108 epochs
    # in the time budget, best epoch 93): balanced accuracy 0.691, accuracy 0.793, AUC 0.904; by
    # `ml compare --split val` against this recipe accuracy -0.005 [-0.021, +0.011], balanced
    # accuracy -0.025 [-0.061, +0.006], AUC -0.010 [-0.019, -0.001]: the first run's balanced
    # accuracy gain does not repeat, and within the hour the larger network falls behind.
    # Nor progressive resizing (2026-12-06, AMD EPYC with AVX-512 BF16): the network built for
    # any input size, epochs 1-50 on the training photos decoded at 112x84, 51-100 at 136x102,
    # the rest at 160x120, the same batches and augmentation, validation always at 160x120. An
    # epoch took 8.6, 9.6 and 14.6 s, so 150 epochs in 27 minutes, where 150 at 160x120 take
    # about 37 there (0.75x). Best epoch 149: balanced accuracy 0.712, accuracy 0.791, AUC 0.914;
    # by `ml compare --split val` against this recipe accuracy -0.007 [-0.022, +0.008], balanced
    # accuracy -0.005 [-0.043, +0.031], AUC +0.000 [-0.007, +0.008]: level, a little faster.
    # Per-epoch AUC 0.025 behind while training at 112x84, 0.005-0.008 at 136x102, within 0.006
    # at 160x120. With the time it saves, the wider tail above (same phases, 150 epochs in 39
    # minutes, best epoch 119): 0.681 / 0.805 / 0.914, by `ml compare` accuracy +0.007 [-0.006,
    # +0.021], balanced accuracy -0.036 [-0.077, -0.002], AUC +0.000 [-0.007, +0.007]. Or 220
    # epochs of this network (112x84 to epoch 75, 136x102 to 150, then 160x120; 39 minutes):
    # per-epoch AUC 0.910-0.911 over epochs 136-165, then down to 0.905 by epoch 215 as it fits
    # the training photos; best epoch 126, still at 136x102: 0.716 / 0.784 / 0.916, by `ml
    # compare` accuracy -0.014 [-0.029, +0.002], balanced accuracy -0.001 [-0.031, +0.030], AUC
    # +0.002 [-0.007, +0.012]. More epochs, like more nevi an epoch above, only overfit sooner.
    # Nor sharpness-aware minimisation (SAM, rho 0.05: each step takes the gradient again at the
    # weights moved rho along the normalised gradient; 2026-12-06, AMD EPYC with AVX-512 BF16),
    # the compute that only overfits spent on flatter minima instead: 33 s an epoch, about twice
    # this recipe's, so 100 epochs planned. Against this recipe at the same share of the run,
    # per-epoch AUC 0.004 behind over epochs 1-10, 0.007 over 11-30, 0.016 over 31-40 and 0.018
    # over 41-49 (0.880 against 0.898); against the same epochs (21-49), 0.004 behind and
    # balanced accuracy 0.02-0.05 behind; stopped at epoch 49.
    # Nor stronger augmentation (2026-12-06, AMD EPYC with AVX-512 BF16, 18.4 s an epoch): zoom
    # 0.75-1.4 (not 0.85-1.25), shift 12% (not 8%), saturation 0.55-1.45, gain 0.85-1.15, contrast
    # 0.7-1.4, brightness +-35 (not 0.7-1.3, 0.9-1.1, 0.8-1.25, +-25). Per-epoch AUC 0.004-0.008
    # behind over epochs 1-60, then 0.012 over 61-75 and 0.015 over 76-78 (0.887 against 0.902),
    # balanced accuracy 0.03-0.05 behind to epoch 75; stopped at epoch 78. With colour jitter
    # halved above, today's strength sits between two worse ones.
    # Nor logit adjustment (Menon et al. 2021) in the class weights' place (same day and machine):
    # unweighted cross-entropy on logits + log(the epoch's class frequencies), so the network's
    # own softmax estimates the class-balanced posterior; 150 epochs in 48 minutes, best epoch 85:
    # balanced accuracy 0.707, accuracy 0.789, AUC 0.893; by `ml compare --split val` against
    # this recipe accuracy -0.008 [-0.023, +0.007], balanced accuracy -0.010 [-0.049, +0.031],
    # AUC -0.021 [-0.037, -0.006]. Per-epoch AUC 0.022 behind over epochs 1-15, within 0.005
    # over 16-75, then 0.010-0.016 behind.
    # Nor a stem that convolves every pixel, then max-pools 2x2, in the strided convolution's
    # place (same day and machine): the same 0.59 M parameters, but 34.5 s an epoch against
    # 18.4 s for this network in the run above (1.9x, for 1.1x the multiply-adds), so about
    # 95 epochs in the time budget. Against this recipe at the same epoch, per-epoch AUC
    # +0.004 over epochs 1-30, +0.007 over 31-45 and +0.001 over 46-55; at the same share of the
    # run, 0.004 behind over epochs 31-40, 0.010 over 41-50 and 0.015 over 51-55 (0.889 against
    # 0.904), balanced accuracy 0.01-0.04 behind; stopped at epoch 55.
    # Nor fewer nevi an epoch, class_cap 2000 (4,315 images an epoch, not 5,315; the other side of
    # every nevus in every epoch above; same day and machine, 18.1 s an epoch): per-epoch AUC
    # 0.031 behind over epochs 1-15, within 0.003 over 16-60, then 0.005-0.006 behind in each
    # 15-epoch block to epoch 110 (0.904 against 0.909 over 106-110), balanced accuracy 0.04
    # behind to epoch 30, then between 0.037 behind and level; stopped at epoch 110.
    # Nor distillation from the shipped model (2026-12-06, Xeon with AMX, 20-25 s an epoch on a
    # machine also running tests): each training photo's target half its label, half the shipped
    # model's calibrated probabilities for it (four views), the same split, so the teacher never
    # saw a validation photo. Per-epoch AUC +0.003 over epochs 16-30 and +0.007 over 31-45, then
    # +0.002 over 46-60 and level over 61-66 (0.896), balanced accuracy 0.03 behind and accuracy
    # 0.04 ahead over 61-66; stopped at epoch 66. It would also need the teacher trained first.
    # Nor progressive self-knowledge distillation (Kim et al. 2021; same day and machine, 24 s an
    # epoch beside tests), which needs no teacher: each training photo's target mixes its label
    # with the network's own softmax for that photo at its previous visit, the mix rising from
    # 0 to 0.8 over the run. Per-epoch AUC +0.005 over epochs 31-45 and +0.004 over 46-60, level
    # over 61-75, then 0.006 behind over 76-90 and 91-101 (0.904 against 0.910), balanced
    # accuracy 0.01-0.03 behind from epoch 61; stopped at epoch 101.
    # Nor SiLU (swish) in each ReLU's place (2026-12-06, AMD EPYC with AVX-512 BF16, 18 s an epoch
    # idle, as ReLU; 23-32 s beside tests, so 130 epochs in the time budget, best epoch 64):
    # balanced accuracy 0.674, accuracy 0.785, AUC 0.904 against 0.717, 0.798, 0.914. Per-epoch
    # AUC +0.006 over epochs 1-15, +0.009 over 31-45, +0.007 over 46-60 and +0.004 over 61-75,
    # then 0.002-0.004 behind to the end; balanced accuracy 0.02-0.04 behind after epoch 75. Like
    # the distillations above: ahead while the learning rate is high, level or behind once annealed.
    # Nor black fill in the rotated and zoomed training images where they leave the photo, in
    # place of reflecting it (2026-12-06, AMD EPYC with AVX-512 BF16, 15 s an epoch, 150 epochs
    # in 37 minutes, best epoch 107): reflection puts mirrored half-lesions and second
    # dermatoscope circles in 17% of an image's pixels on average, which validation never shows.
    # Calibrated as this recipe's (offset included, `ml recalibrate`): balanced accuracy 0.741,
    # accuracy 0.784, AUC 0.916 against 0.715, 0.811, 0.915; by `ml compare --split val` accuracy
    # -0.027 [-0.045, -0.009], balanced accuracy +0.025 [-0.028, +0.080], AUC +0.001 [-0.006,
    # +0.008] (its decision rule leans further to the rare classes, tau 0.75 against 0.50).
    # Per-epoch AUC level throughout (within 0.005), 0.003-0.004 behind after epoch 105.
    # Nor max-pooling with "same" padding (same day and machine, 11-25 s an epoch beside tests,
    # 150 epochs in 42 minutes, best epoch 119): with "valid" padding the height goes 120, 60,
    # 30, 15, 7, 3 and the photo's bottom rows reach the logits only through their neighbours'
    # edges (greying rows 108-119 moved the logits 0.165, rows 0-11 0.281). Calibrated as this
    # recipe: balanced accuracy 0.716, accuracy 0.791, AUC 0.919 against 0.715, 0.811, 0.915; by
    # `ml compare --split val` accuracy -0.020 [-0.033, -0.006], balanced accuracy +0.001
    # [-0.035, +0.029], AUC +0.004 [-0.002, +0.010] (tau 0.70). Per-epoch AUC within 0.005.
    # Nor CutMix (Yun et al. 2019; 2026-12-07, AMD EPYC with AVX-512 BF16, 15-22 s an epoch beside
    # tests): half the training images get a rectangle of a random share of their area (uniform)
    # from the batch's next image, labels and sample weights mixed by area. Per-epoch AUC 0.022
    # behind over epochs 1-15, 0.006-0.008 over 31-60, then 0.013 in each block from 61 to 105
    # (0.896 against 0.910 over 91-105); accuracy and balanced accuracy level after epoch 75;
    # stopped at epoch 105. Like mixup and cutout above: no gain from mixing images here.
    # Nor, without retraining, BatchNormalization statistics computed afresh for the shipped
    # weights on clean photos (2026-12-07, AMD EPYC with AVX-512 BF16): training kept them as
    # moving averages over augmented batches, whose colour jitter leaves the first layer's
    # variance 1.25x that of unaugmented photos. Each layer's mean and variance, in turn, over the
    # 7,018 training photos in their four test-time views, the layers before it already updated;
    # then `ml recalibrate`. By `ml compare --split val` against the shipped model: AUC +0.003
    # [-0.000, +0.007], accuracy -0.009 [-0.018, +0.001], balanced accuracy -0.024 [-0.055,
    # -0.001]; from an epoch's mix instead (at most 3,000 nevi) AUC +0.002, accuracy -0.009,
    # balanced accuracy -0.024. The malignant ranking gains a little, the class shown loses more.
    # Nor the shipped weights trained on for a few epochs more on unaugmented photos (same day
    # and machine; AdamW, learning rate 1e-4, the same loss, class weights and epoch mix, no
    # weight average; under a minute an epoch): per-epoch AUC 0.914, 0.915, 0.917, 0.919, 0.918,
    # 0.919 over epochs 1-6; then `ml recalibrate` and `ml compare --split val`, after 4 epochs
    # AUC +0.004 [-0.001, +0.008], accuracy -0.033 [-0.048, -0.018], balanced accuracy -0.004;
    # after 6, AUC +0.004, accuracy -0.013, balanced accuracy -0.059 [-0.107, -0.020]. As above.
    "full": {"input_size": (160, 120), "widths": (16, 32, 64, 128, 256), "convs": (1, 2, 2, 2, 1),
             "stem_stride": 2, "cam_block": 3, "dropout": 0.3, "epochs": 150, "batch_size": 64,
             "learning_rate": 3e-3, "weight_decay": 0.05, "weight_power": 0.5,
             "val_fraction": 0.18, "tta_views": 4, "augment": True, "class_cap": 3000,
             "label_smoothing": 0.1, "mixed_precision": True, "max_train_seconds": 3300,
             "average_decay": 0.998},
    "tiny": {"input_size": (48, 36), "widths": (8, 16, 24), "convs": (1, 1, 1),
             "stem_stride": 1, "cam_block": 2, "dropout": 0.0, "epochs": 10, "batch_size": 8,
             "bn_momentum": 0.8,
             "learning_rate": 1e-2, "weight_decay": 0.0, "weight_power": 0.5,
             "val_fraction": 0.25, "tta_views": 2, "augment": False, "label_smoothing": 0.1,
             "mixed_precision": True, "max_train_seconds": 120, "average_decay": 0.9},
}


def build_model(*, input_size, widths, convs, dropout, stem_stride=1, cam_block=-1, bn_momentum=0.99,
                n_classes=7, seed=0, **_ignored):
    import keras
    from keras import layers

    width, height = input_size
    init = keras.initializers.HeNormal(seed=seed)
    inputs = keras.Input(shape=(height, width, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    n_blocks = len(widths)
    cam_block = cam_block % n_blocks
    for b, (filters, n_conv) in enumerate(zip(widths, convs)):
        for c in range(n_conv):
            strides = stem_stride if b == 0 and c == 0 else 1
            x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                              kernel_initializer=init, name=f"b{b}_conv{c}")(x)
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"b{b}_bn{c}")(x)
            last = b == cam_block and c == n_conv - 1
            x = layers.ReLU(name=CAM_LAYER if last else f"b{b}_relu{c}")(x)
        if b < n_blocks - 1:
            x = layers.MaxPool2D(2, name=f"b{b}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, seed=seed, name="dropout")(x)
    # float32 logits even under a mixed-precision policy: softmax and the loss need the range
    logits = layers.Dense(n_classes, kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
                          dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="molesite_cnn")


def fold_batchnorm(model):
    """The same network for inference, each BatchNormalization folded into the convolution
    before it (kernel * gamma / sqrt(var + eps), bias = beta - mean * that scale): one op fewer
    per convolution, the same logits to float rounding. It rebuilds the model as the plain chain
    of layers build_model makes, in model.layers order; a graph of another shape would come out
    wrong, which is why ml.inference checks the logits before using it. Returns None when there
    is nothing to fold, or a BatchNormalization lacks its learned scale or shift."""
    import keras
    from keras import layers

    chain = model.layers[1:]  # after the InputLayer, in call order
    if not any(isinstance(layer, layers.BatchNormalization) for layer in chain):
        return None
    x = inputs = keras.Input(shape=model.input_shape[1:], name=model.layers[0].name)
    copies = []  # (new layer, weights to give it)
    i = 0
    while i < len(chain):
        layer = chain[i]
        following = chain[i + 1] if i + 1 < len(chain) else None
        if isinstance(layer, layers.Conv2D) and isinstance(following, layers.BatchNormalization):
            if not following.scale or not following.center:
                return None
            kernel = layer.get_weights()[0]
            bias = layer.get_weights()[1] if layer.use_bias else 0.0
            gamma, beta, mean, variance = following.get_weights()
            scale = gamma / np.sqrt(variance + following.epsilon)
            copy = layers.Conv2D.from_config({**layer.get_config(), "use_bias": True})
            copies.append((copy, [kernel * scale, beta + (bias - mean) * scale]))
            i += 2
        else:
            copy = layer.__class__.from_config(layer.get_config())
            copies.append((copy, layer.get_weights()))
            i += 1
        x = copy(x)
    folded = keras.Model(inputs, x, name=model.name)
    for copy, weights in copies:
        copy.set_weights(weights)
    return folded
