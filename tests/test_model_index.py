"""The OpenMMLab model index (model-index.yml, configs/*/metafile.yaml) lists every config once,
points at configs that exist, carries the README tables' numbers and is current."""
import yaml

from tests.conftest import REPO_ROOT
from tests.tools.conftest import load_tool

model_index = load_tool('model_index.py')
#: Config folders that are no model zoo (bases and the demo).
NOT_A_ZOO = {'_base_', 'demo'}


def _metafiles():
    imports = yaml.safe_load((REPO_ROOT / 'model-index.yml').read_text())['Import']
    return {path: yaml.safe_load((REPO_ROOT / path).read_text()) for path in imports}


def test_files_are_current():
    assert model_index.main(['--check']) == 0, 'run python tools/model_index.py'


def test_every_config_listed_once_and_every_entry_exists():
    listed = [model['Config'] for metafile in _metafiles().values()
              for model in metafile['Models']]
    assert len(listed) == len(set(listed)), 'a config is listed twice'
    for config in listed:
        assert (REPO_ROOT / config).is_file(), f'{config} is listed but does not exist'
    on_disk = {str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / 'configs').glob('*/*.py')
               if path.parent.name not in NOT_A_ZOO}
    assert on_disk == set(listed), f'not listed: {sorted(on_disk - set(listed))}'


def test_schema_and_collections():
    for path, metafile in _metafiles().items():
        collections = {collection['Name'] for collection in metafile['Collections']}
        for model in metafile['Models']:
            assert {'Name', 'In Collection', 'Config', 'Metadata'} <= set(model), path
            assert model['In Collection'] in collections, (path, model['Name'])
            for result in model.get('Results', []):
                assert {'Task', 'Dataset', 'Metrics'} <= set(result)


def test_numbers_are_the_readme_tables():
    """Spot checks against rows of the READMEs (published numbers, our counts)."""
    models = {model['Name']: model for metafile in _metafiles().values()
              for model in metafile['Models']}
    segformer = models['segformer_mit-b1_fade_8xb2-160k_ade20k-512x512']
    assert segformer['Results'][0]['Metrics'] == {'mIoU': 44.41}
    assert segformer['Metadata']['Added Parameters'] == 285084
    faster = models['faster-rcnn_r50_fpncarafe-nearest_1x_coco']
    assert faster['Metadata']['Parameters'] == 46836640
    upernet = models['upernet_r50_carafe_4xb4-80k_ade20k-512x512']
    assert upernet['Results'][0]['Metrics'] == {'mIoU': 41.49}


def test_mirl_configs_are_filed_under_their_own_task_and_data():
    """MIRL's folder holds segmentation, pretraining and classification configs, each filed so."""
    models = {model['Name']: model for model in _metafiles()['configs/mirl/metafile.yaml']['Models']}
    fine_tune = models['mirl_vit-b48-p16_ft-32xb16-accum4-amp-coslr-60e_in1k']
    assert fine_tune['Metadata']['Training Data'] == 'ImageNet-1k'
    assert fine_tune['Results'] == [{'Task': 'Image Classification', 'Dataset': 'ImageNet-1k',
                                     'Metrics': {'Top 1 Accuracy (300-epoch pretraining)': 85.3,
                                                 'Top 1 Accuracy (800-epoch pretraining)': 86.2}}]
    assert models['mirl_vit-b48-p16_64xb64-amp-coslr-800e_in1k']['Metadata'][
        'Training Data'] == 'ImageNet-1k'
    assert models['upernet_mirl-vit-b48_8xb2-amp-160k_ade20k-512x512']['Metadata'][
        'Training Data'] == 'ADE20K'
    assert model_index.task_of('mirl', 'mirl_vit-tiny-d6_ft-1xb6-8e_synthetic-in1k-32x32') == (
        'Image Classification', 'synthetic ImageNet layout (generated)')
    assert model_index.task_of('mirl', 'mirl_vit-tiny-d6_1xb4-10e_synthetic-in1k-32x32')[0] == \
        'Self-Supervised Pretraining'
