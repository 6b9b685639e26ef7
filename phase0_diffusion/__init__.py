"""Phase 0: diffusion foundations (DDPM, EDM, DDIM, classifier-free guidance) on small images.

Public surface (what other phases, notebooks and tests may import):

    config      Phase0Config, DataConfig, SampleConfig, EvalRunConfig, ClassifierConfig, SAMPLERS
    data        load_images, build_split, ImageData, ImageTensorDataset, to_model_range, from_model_range,
                DataNotFoundError, synthetic_images
    model       ImageDiffusion (loss, denoise, sample), SmallCNN (the FID-proxy classifier),
                load_trained(spec, root, device) -> .model/.cfg/.meta/.run (a run or a release)
    sampling    generate, sample_grid, grid_labels, nfe, tag, open_trained
    fid         Judge, load_judge, find_classifier, measure, frechet_distance, feature_stats, inception_fid
    inception   build_inception, inception_features (pytorch-fid's network, user-supplied weights)

Entry points (`python -m phase0_diffusion.<name>`, used by other code only through `main`): train, eval, sample,
classifier, demo, experiments. See README.md.
"""
